#pragma once

// Mux.Cool, the session multiplexing of v2ray and Xray (v2ray-core common/mux/frame.go,
// reader.go, writer.go), which v2ray-plugin clients speak over the websocket by default
// (`mux=1`). Sans-I/O: parse frames from a byte stream fed in pieces of any size, encode
// frames into caller buffers, and tell a Mux.Cool stream from a plain one by its first bytes.
//
//   u16 metaLen                  (at most 512; at least 4, and 8 for New)
//   meta, metaLen bytes:
//     u16 session id
//     u8  status                 1 New, 2 Keep, 3 End, 4 KeepAlive
//     u8  option                 bit 0x01: data follows; bit 0x02: error
//     New only:
//       u8  network              1 TCP, 2 UDP
//       u16 port                 (the port comes before the address)
//       u8  address type         1 IPv4 (4 bytes), 2 domain (u8 length + name), 3 IPv6 (16)
//     anything after that is ignored (Xray's XUDP global id, for one)
//   with the data bit:
//     u16 length, then length bytes of payload
//
// All integers are big-endian. Frames have nothing to do with websocket messages: the payload
// of the websocket is one byte stream, and a frame may be cut anywhere.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace kaminari::codec::mux {

/// Largest metadata a frame may carry (v2ray's reader: "invalid metalen").
inline constexpr std::size_t max_meta_size = 512;

/// The ALPN protocol that says a `tls` connection (no websocket) carries Mux.Cool from its
/// first byte: kaminaric's `tls;mux=<n>` offers it last, after its other protocols, and
/// kaminaris selects it. A server that does not know it selects another (or none), and the
/// client then knows not to send Mux.Cool.
inline constexpr std::string_view tls_alpn = "kaminari-mux";

/// Largest payload one frame carries (a u16 length).
inline constexpr std::size_t max_frame_payload = 0xffff;

/// Size of a Keep frame's head with the data bit: metaLen, id, status, option, length.
inline constexpr std::size_t keep_head_size = 8;

/// Size of an End frame (no data).
inline constexpr std::size_t end_frame_size = 6;

/// Largest New frame head: metaLen, 4 + 1 + 2 + 1 + 1 + 255 bytes of meta, data length.
inline constexpr std::size_t max_new_head_size = 2 + 4 + 1 + 2 + 1 + 1 + 255 + 2;

enum class status : std::uint8_t {
    new_session = 1, ///< opens a session (client to server only)
    keep = 2,        ///< carries data of an open session
    end = 3,         ///< the sender's side of the session is done
    keep_alive = 4,  ///< nothing; any attached data is discarded
};

inline constexpr std::uint8_t option_data = 0x01;  ///< a u16 length and payload follow the meta
inline constexpr std::uint8_t option_error = 0x02; ///< with End: the session failed

enum class network : std::uint8_t { tcp = 1, udp = 2 };

enum class address_type : std::uint8_t { ipv4 = 1, domain = 2, ipv6 = 3 };

/// Why a stream is not (or no longer) valid Mux.Cool. Every error ends the whole connection,
/// as in v2ray ("failed to read metadata").
enum class error : std::uint8_t {
    ok = 0,
    bad_meta_length, ///< metaLen over 512, under 4, or under 8 for New
    bad_status,      ///< status not New, Keep, End or KeepAlive
    bad_network,     ///< New with a network other than TCP or UDP
    bad_address,     ///< New with an unknown address type, or an address past the meta
};

/// A short English description of `e` for log lines.
std::string_view to_string(error e) noexcept;

/// The decoded metadata of one frame.
struct frame_meta {
    std::uint16_t id = 0;
    status st = status::keep;
    std::uint8_t option = 0;
    /// The payload length when the data bit is set, else 0.
    std::uint16_t length = 0;
    // New only (zero otherwise):
    network net = network::tcp;
    std::uint16_t port = 0;
    address_type addr_type = address_type::ipv4;
    std::uint8_t addr_size = 0;           ///< bytes of `addr` used
    std::array<std::uint8_t, 255> addr{}; ///< IPv4/IPv6 bytes, or the domain name

    bool has_data() const noexcept { return (option & option_data) != 0; }
    bool has_error() const noexcept { return (option & option_error) != 0; }
};

/// What a parser::feed() call produced.
enum class event : std::uint8_t {
    none,  ///< the consumed bytes went into the parser's stash; feed the rest
    frame, ///< a frame's metadata is complete: parser::meta()
    data,  ///< `consumed` bytes at the front of the input are payload of the current frame
};

struct parse_step {
    error err = error::ok;
    std::size_t consumed = 0; ///< bytes at the front of the input used by this step
    event ev = event::none;
};

/// Incremental frame parser. Feed it the stream in pieces of any size; each call consumes a
/// prefix of its input and reports at most one event, so the caller loops:
///
///     while (!in.empty()) {
///         auto step = p.feed(in);
///         if (step.err != mux::error::ok) ...  // sticky: the stream is not Mux.Cool
///         if (step.ev == mux::event::frame) use(p.meta());
///         if (step.ev == mux::event::data) deliver(in.first(step.consumed));
///         in = in.subspan(step.consumed);
///     }
///
/// A frame event comes once per frame, when its meta and (with the data bit) its length have
/// arrived; its payload then comes as data events (none when the length is 0). The meta and
/// length, at most 516 bytes, are stashed inside the parser across calls; payload bytes are
/// never copied. Validation is v2ray's: metaLen within 4..512 (8.. for New), a known status,
/// for New a known network and an address type whose address fits the meta; option bits
/// other than data and error and meta bytes after the address are ignored. Domain names are
/// not checked here (kaminaris ignores the destination). Plain values, no allocation.
class parser {
public:
    /// Consumes a prefix of `in` (at least one byte when `in` is not empty and no error has
    /// occurred). After an error every call returns that error and consumes nothing.
    parse_step feed(std::span<const std::uint8_t> in) noexcept;

    /// The metadata of the current (or last) frame; valid after a frame event until the next
    /// frame event.
    const frame_meta& meta() const noexcept { return meta_; }

    /// Payload bytes of the current frame not yet delivered.
    std::size_t data_remaining() const noexcept { return remaining_; }

    /// True between frames (a stream that ends here ended cleanly).
    bool idle() const noexcept { return state_ == state::meta_length && have_ == 0; }

    error last_error() const noexcept { return err_; }

private:
    enum class state : std::uint8_t { meta_length, meta, data_length, data };

    error decode_meta() noexcept;
    parse_step fail(error e) noexcept {
        err_ = e;
        return {e, 0, event::none};
    }

    std::array<std::uint8_t, max_meta_size> stash_{};
    frame_meta meta_;
    std::size_t need_ = 2; // bytes the current field takes
    std::size_t have_ = 0; // bytes of it stashed
    std::size_t remaining_ = 0;
    state state_ = state::meta_length;
    error err_ = error::ok;
};

/// What the first bytes of a stream say.
enum class verdict : std::uint8_t {
    need_more, ///< a prefix of a plausible New frame: read more to decide
    mux,       ///< a well-formed New frame head (see detect())
    plain,     ///< anything else
};

/// End frames a Mux.Cool stream may open with before its first New (see detect()).
inline constexpr std::size_t max_leading_ends = 32;

/// Decides from a stream's first bytes whether it is Mux.Cool: the stream must open with the
/// head of a New frame as a v2ray or Xray client writes it, after at most max_leading_ends
/// End frames (`00 04 id id 03 00|02`: v2ray's client sends End without New for a session
/// whose app closed before its first payload): metaLen at most 512, status New,
/// option 0x00 or 0x01 (no data or data; never error, no other bit), network TCP or UDP, and
/// an address of type IPv4, IPv6 or domain (1 to 255 characters of [0-9A-Za-z._-]) that fits
/// in metaLen. Returns plain at the first byte that rules this out, mux once the address
/// type has arrived and, for a domain, the name (at most 32 x 6 + 266 bytes), need_more
/// before either.
/// For uniformly random
/// bytes (a shadowsocks salt) the chance of `mux` is about 1.4e-11; see the README.
verdict detect(std::span<const std::uint8_t> prefix) noexcept;

/// Whether `prefix` is one or more whole End frames as detect() takes them before a New, and
/// nothing else: what v2ray's client has sent on a websocket whose first app closed before
/// its first payload, and which may stay that way until its next app connects. Such a stream
/// is Mux.Cool whenever its New comes (see serve_if_mux()).
bool only_leading_ends(std::span<const std::uint8_t> prefix) noexcept;

/// Writes a Keep frame head with the data bit for `length` payload bytes of session `id`:
/// `00 04 id id 02 01 len len`. The payload follows it on the wire.
void encode_keep_head(std::span<std::uint8_t, keep_head_size> out, std::uint16_t id,
                      std::uint16_t length) noexcept;

/// Writes an End frame for session `id` (`00 04 id id 03 00`, or `... 03 02` with `failed`).
void encode_end(std::span<std::uint8_t, end_frame_size> out, std::uint16_t id,
                bool failed) noexcept;

/// Writes the head of a New frame for session `id` to `network`, `port` and `addr` (4 bytes
/// for IPv4, 16 for IPv6, 1 to 255 for a domain); with `length` != 0, the data bit and the
/// length, and `length` payload bytes follow it on the wire. Returns the bytes written, or 0
/// when `addr` has a wrong size or `out` is shorter than max_new_head_size.
std::size_t encode_new_head(std::span<std::uint8_t> out, std::uint16_t id, network net,
                            std::uint16_t port, address_type type,
                            std::span<const std::uint8_t> addr, std::uint16_t length) noexcept;

} // namespace kaminari::codec::mux

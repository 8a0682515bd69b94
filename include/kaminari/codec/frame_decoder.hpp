#pragma once

// RFC 6455 §5 receive side: turns the bytes of a websocket connection into the payload byte
// stream, in place in the caller's buffer, plus control-frame events (§5.5).
//
// Frame boundaries and FIN are not reported: the tunnel treats the payload of all binary
// (and continuation) frames as one byte stream. No payload is buffered: data payload is
// unmasked and moved to the front of the buffer that was passed in. The decoder keeps only
// plain values: a header stash of at most 14 bytes, the current frame's remaining length,
// mask key and key phase, and the payload of one control frame (<= 125 bytes).

#include <kaminari/codec/errc.hpp>
#include <kaminari/codec/frame.hpp>
#include <kaminari/codec/mask.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace kaminari::codec {

/// Close status codes used by the tunnel (§7.4.1).
namespace close_code {
inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t protocol_error = 1002;
inline constexpr std::uint16_t unsupported_data = 1003; ///< sent for text frames
inline constexpr std::uint16_t no_status = 1005;        ///< reported for an empty close frame
} // namespace close_code

/// Result of frame_decoder::feed().
struct decode_step {
    errc err = errc::ok;     ///< ok, or the protocol violation found (the rest of the input
                             ///< and any payload before it are then dropped)
    std::size_t payload = 0; ///< unmasked payload bytes now at the front of the buffer
    bool ping = false;       ///< a ping completed: answer with ping_payload()
    bool pong = false;       ///< a pong completed (ignored by the tunnel)
    bool close = false;      ///< a close frame completed: see close_code(); later bytes ignored
};

/// The receive state machine of one websocket connection.
///
/// Copyable, no heap, noexcept. Not thread safe: one reader at a time.
class frame_decoder {
public:
    /// `local` is this endpoint's role: a server requires masked frames, a client unmasked.
    explicit frame_decoder(role local) noexcept
        : role_(local) {}

    /// Decodes `buf`, the bytes that followed everything fed before (any size, even 1 byte).
    ///
    /// `buf` is mutated: on return its first `payload` bytes are the unmasked data payload
    /// contained in it, in order; the rest is scratch. A header that is cut off at the end is
    /// stashed (at most 13 bytes) and completed by the next call; a masked payload split at any
    /// point continues from the right key byte. A frame masked with the all-zero key is not
    /// XORed at all.
    ///
    /// Errors (err != ok): any decode_header() rejection, `text_frame`, `bad_continuation`,
    /// `bad_close_payload`, `bad_close_code`. After an error the decoder stays failed and
    /// every later call returns the same error. After a close frame, bytes are ignored.
    decode_step feed(std::span<std::uint8_t> buf) noexcept;

    /// True between frames with no header bytes stashed: end of stream here is clean.
    bool idle() const noexcept { return state_ == state::head && stash_len_ == 0; }

    /// True once a close frame has been decoded.
    bool closed() const noexcept { return state_ == state::closed; }

    /// The close frame's status code; close_code::no_status when it had no payload.
    std::uint16_t close_code() const noexcept { return close_code_; }

    /// Payload of the most recent complete ping (<= 125 bytes); valid until the next feed().
    std::span<const std::uint8_t> ping_payload() const noexcept {
        return {ping_.data(), ping_len_};
    }

    /// The error the decoder failed with, or `ok`.
    errc error() const noexcept { return err_; }

private:
    enum class state : std::uint8_t { head, data, control, closed, failed };

    errc start_frame(const frame_header& h, decode_step& step) noexcept;
    errc finish_control(decode_step& step) noexcept;

    role role_;
    state state_ = state::head;
    errc err_ = errc::ok;
    bool in_message_ = false; ///< inside a fragmented binary message
    bool unmask_ = false;     ///< the current frame has a non-zero key
    opcode op_ = opcode::binary;
    std::uint8_t stash_len_ = 0;
    std::uint8_t control_len_ = 0;
    std::uint8_t ping_len_ = 0;
    std::uint8_t phase_ = 0;
    std::uint16_t close_code_ = 0;
    mask_key key_{};
    std::uint64_t remaining_ = 0;
    std::array<std::uint8_t, max_header_size> stash_{};
    std::array<std::uint8_t, max_control_payload> control_{};
    std::array<std::uint8_t, max_control_payload> ping_{};
};

/// True when `code` may appear in a received close frame (§7.4.1, §7.4.2): 1000-1003,
/// 1007-1014 and 3000-4999.
constexpr bool is_valid_close_code(std::uint16_t code) noexcept {
    if (code >= 1000 && code <= 1003) {
        return true;
    }
    if (code >= 1007 && code <= 1014) {
        return true;
    }
    return code >= 3000 && code <= 4999;
}

} // namespace kaminari::codec

#pragma once

// RFC 6455 §4 opening handshake, without I/O: the client's upgrade request, the server's
// checks and its 101 or error response, and the client's checks of the response.
//
// Parsers take the bytes read so far and either say `need_more`, or report how many bytes the
// HTTP head took (`consumed`, through the blank line), so that whatever follows the head in the
// same read (a first frame, pipelined data) is kept by the caller. Strings in the results
// point into the caller's buffer. Lines must end in CRLF. Limits: the head must fit in
// max_head_size bytes and carry at most max_headers header lines.
//
// Server policy (documented choices):
// - The request target must equal the configured path exactly (no query string allowed).
// - Host is compared case-insensitively and may carry a port (`Host: example.com:8080`
//   matches `example.com`), because many clients (python websockets) send the port whenever
//   it is not the scheme default. If the configured host itself has a port, it must match.
// - A wrong Host or path is answered like a web server would: 404 with a short HTML body.
//   Host and path are checked before the websocket headers, so a plain GET for another page
//   also gets 404.
// - A wrong Sec-WebSocket-Version gets 426 with `Sec-WebSocket-Version: 13` (§4.4); a head
//   that is too large or has too many headers 431; anything else malformed 400.
//
// Websocket early data (Xray's `ed`, see codec/base64.hpp): a client may send its first bytes
// in `Sec-WebSocket-Protocol` as one base64url token. The server takes a header value as early
// data when it is the only Sec-WebSocket-Protocol line and its whole value is one valid base64
// token (either alphabet, padding optional) of 1 to max_early_data_size bytes; it echoes the
// value unchanged in the 101. Anything else (a comma-separated subprotocol list, a value with
// spaces, several lines, text that does not decode) is an ordinary subprotocol offer: ignored
// and not echoed, as before. Like Xray, a single ordinary name that happens to be valid base64
// (`chat`) is read as early data: a tunnel server has no subprotocols of its own.

#include <kaminari/codec/base64.hpp>
#include <kaminari/codec/errc.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace kaminari::codec {

/// Largest HTTP head (request or response line, headers, blank line) accepted: Xray's limit,
/// so 2048 bytes of early data fit behind the headers a CDN or browser adds.
inline constexpr std::size_t max_head_size = 8192;

/// Most early data bytes a server takes from one request. A head of max_head_size bytes
/// cannot carry more base64 than this decodes to; the limit just makes that explicit.
inline constexpr std::size_t max_early_data_size = max_head_size / 4 * 3;

/// Largest number of header lines accepted in a head.
inline constexpr std::size_t max_headers = 32;

/// Bytes of random nonce in a Sec-WebSocket-Key (§4.1).
inline constexpr std::size_t sec_key_nonce_size = 16;

/// A Sec-WebSocket-Key value: base64 of the 16-byte nonce, 24 characters.
using sec_key = std::array<char, 24>;

/// A Sec-WebSocket-Accept value: base64 of a SHA-1 digest, 28 characters.
using sec_accept = std::array<char, 28>;

inline std::string_view to_string_view(const sec_key& k) noexcept {
    return {k.data(), k.size()};
}
inline std::string_view to_string_view(const sec_accept& a) noexcept {
    return {a.data(), a.size()};
}

/// Base64-encodes the caller's random `nonce` into a Sec-WebSocket-Key (§4.1).
sec_key make_sec_key(std::span<const std::uint8_t, sec_key_nonce_size> nonce) noexcept;

/// base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")) (§4.2.2). Uses libcrypto.
sec_accept make_sec_accept(std::string_view key) noexcept;

/// True when `key` is 24 characters of base64 that decode to 16 bytes (§4.2.1 item 5).
bool is_valid_sec_key(std::string_view key) noexcept;

/// The request header by which kaminaric says it ends its direction with a close frame and
/// reads the peer's close frame as end of stream (a half-close). Other websocket clients
/// (v2ray-plugin) take a close frame as an error and drop what they have not yet delivered;
/// a server lingers before closing towards them (see ws_stream::set_close_linger).
inline constexpr std::string_view half_close_header = "Kaminari-Half-Close";

/// The request header (`Kaminari-Udp: 1`) by which kaminaric opens a UDP association (`udp`):
/// the stream then carries length-prefixed datagrams (codec/udp_frame.hpp) for the server's
/// UDP target. Same host, same path: a request without it is a TCP connection as before, and a
/// prober that does not send it sees nothing new.
inline constexpr std::string_view udp_header = "Kaminari-Udp";

/// The request header (`Kaminari-Mux: 1`) by which kaminaric says its websocket carries
/// Mux.Cool sessions (`mux=<n>`): kaminaris serves it as such at once, without guessing from
/// the first bytes or dialing the remote for a plain stream first.
inline constexpr std::string_view mux_header = "Kaminari-Mux";

/// What a kaminaric websocket carries, as its request says.
enum class carriage : std::uint8_t {
    stream, ///< one TCP stream (no header)
    udp,    ///< datagrams of a UDP association (`Kaminari-Udp: 1`)
    mux,    ///< Mux.Cool sessions (`Kaminari-Mux: 1`)
};

/// Writes the client's upgrade request into `out`:
/// `GET <path> HTTP/1.1`, Host, `Upgrade: websocket`, `Connection: Upgrade`,
/// `Sec-WebSocket-Key: <key>`, `Sec-WebSocket-Version: 13`, `Kaminari-Half-Close: 1`,
/// `Sec-WebSocket-Protocol: <protocol>` when `protocol` is not empty (early data: the base64url
/// of the bytes, see base64url_encode()), and the header for `what` (none for a stream).
/// Returns the bytes written, or 0 when `out` is too small (its contents are then undefined).
std::size_t encode_request(std::span<std::uint8_t> out, std::string_view host,
                           std::string_view path, std::string_view key,
                           std::string_view protocol = {},
                           carriage what = carriage::stream) noexcept;

/// Result of parse_request().
struct request_result {
    errc err = errc::need_more;       ///< ok (answer 101), need_more, or why to refuse
    std::size_t consumed = 0;         ///< length of the head when it was complete; else 0
    std::string_view key;             ///< Sec-WebSocket-Key, pointing into the input, when ok
    bool half_close = false;          ///< `Kaminari-Half-Close: 1` was sent (a kaminaric client)
    carriage what = carriage::stream; ///< what the headers say the websocket carries
    /// When ok: the Sec-WebSocket-Protocol value that carries early data (see the top of this
    /// file), pointing into the input; empty when the request carries none. Decode it with
    /// base64_decode() into early_data_size bytes, and echo it with encode_accept_response().
    std::string_view early_data{};
    std::size_t early_data_size = 0; ///< bytes `early_data` decodes to (1..max_early_data_size)
};

/// Checks an upgrade request at the front of `in` against the configured `host` and `path`.
///
/// Returns `need_more` while the head is incomplete and shorter than max_head_size. Errors
/// and the status they answer (see response_status()): `head_too_large`, `too_many_headers`
/// (431); `bad_request_line`, `bad_header_line`, `missing_host`, `bad_method` (not GET),
/// `bad_http_version` (not HTTP/1.1), `missing_upgrade` (no `websocket` token),
/// `missing_connection` (no `Upgrade` token; both are case-insensitive comma lists),
/// `missing_version`, `bad_key` (400); `wrong_host`, `wrong_path` (404); `bad_version` (426).
request_result parse_request(std::span<const std::uint8_t> in, std::string_view host,
                             std::string_view path) noexcept;

/// For a server with a fallback site: whether the bytes read so far (`in`) can still become an
/// upgrade request for `host` and `path`, decided at the earliest byte that tells. `need_more`:
/// they may still. `ok`: a complete, valid request (parse_request() accepts it). An error: they
/// will not, and why. The request line of a valid upgrade is exactly `GET <path> HTTP/1.1`, so
/// a differing byte there is enough: `bad_request_line` for a first byte that cannot start a
/// method (not HTTP at all), `bad_method`, `wrong_path`, `bad_http_version`; past the line, the
/// complete head decides (parse_request()'s errors, including `wrong_host`), and
/// `head_too_large` when max_head_size bytes hold no end of the head.
errc classify_request(std::span<const std::uint8_t> in, std::string_view host,
                      std::string_view path) noexcept;

/// The HTTP status a server answers for a parse_request() outcome: 101 for ok, else 400, 404,
/// 426 or 431.
int response_status(errc reason) noexcept;

/// Writes `HTTP/1.1 101 Switching Protocols` with Upgrade, Connection, the
/// Sec-WebSocket-Accept for `key`, and `Sec-WebSocket-Protocol: <protocol>` when `protocol` is
/// not empty (the echo of early data). Returns the bytes written, or 0 when `out` is too small
/// (256 bytes plus the size of `protocol` always suffice).
std::size_t encode_accept_response(std::span<std::uint8_t> out, std::string_view key,
                                   std::string_view protocol = {}) noexcept;

/// Writes the error response for `reason` (its response_status(): 400, 404, 426 or 431) with
/// a short HTML body, Content-Type, Content-Length and `Connection: close`; 426 also carries
/// `Upgrade: websocket` and `Sec-WebSocket-Version: 13`. Precondition: `reason` is an error.
/// Returns the bytes written, or 0 when `out` is too small (512 bytes always suffice).
std::size_t encode_error_response(std::span<std::uint8_t> out, errc reason) noexcept;

/// Result of parse_response().
struct response_result {
    errc err = errc::need_more; ///< ok, need_more, or why the handshake failed
    std::size_t consumed = 0;   ///< length of the head when it was complete; else 0
    int status = 0;             ///< the status code when the status line was parsed
    /// When ok and the request offered a `protocol`: the server echoed it, so it took the
    /// early data. False: it ignored the header (a server without early data support), and
    /// the client must send those bytes again as frames.
    bool protocol_echoed = false;
};

/// Checks the server's response at the front of `in` for the request that carried `key`:
/// status 101, `Upgrade: websocket`, `Connection: Upgrade` and the right Sec-WebSocket-Accept.
/// `protocol` is the Sec-WebSocket-Protocol the request offered (early data), or empty.
/// Errors: `head_too_large`, `too_many_headers`, `bad_request_line` (bad status line),
/// `bad_header_line`, `bad_http_version`, `bad_status` (not 101), `missing_upgrade`,
/// `missing_connection`, `bad_accept`; `bad_protocol` when a `protocol` was offered and the
/// 101 names another one, or several (§4.1 item 6: the server chose something the client did
/// not offer, so whether it took the early data is unknown). Without an offered `protocol` a
/// Sec-WebSocket-Protocol in the response is not checked.
response_result parse_response(std::span<const std::uint8_t> in, std::string_view key,
                               std::string_view protocol = {}) noexcept;

} // namespace kaminari::codec

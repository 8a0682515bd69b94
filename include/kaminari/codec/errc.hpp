#pragma once

// Result codes of the sans-I/O websocket codec (RFC 6455 framing, §5, and opening handshake,
// §4). The codec never throws: every function returns one of these inside its result.
// net/ws_error.hpp maps them onto a boost::system error category.

#include <cstdint>

namespace kaminari::codec {

/// Outcome of a codec call. `ok` and `need_more` are not errors; every other value is.
enum class errc : std::uint8_t {
    ok = 0,    ///< success
    need_more, ///< input ends before the item is complete: read more and call again

    // Framing (RFC 6455 §5): each is a protocol violation and ends the connection.
    reserved_bits,        ///< RSV1-3 set, but no extension was negotiated (§5.2)
    bad_opcode,           ///< reserved opcode 0x3-0x7 or 0xB-0xF (§5.2)
    fragmented_control,   ///< control frame without FIN (§5.5)
    control_too_long,     ///< control frame payload longer than 125 bytes (§5.5)
    bad_length,           ///< 64-bit payload length with the most significant bit set (§5.2)
    non_canonical_length, ///< length not in the minimal number of bytes (§5.2)
    missing_mask,         ///< a server received an unmasked frame (§5.1)
    unexpected_mask,      ///< a client received a masked frame (§5.1)
    bad_continuation,     ///< continuation without a message, or a new message inside one (§5.4)
    text_frame,           ///< a text frame: the tunnel carries binary data only (close 1003)
    bad_close_payload,    ///< close frame with a 1-byte payload (§5.5.1)
    bad_close_code,       ///< close frame with a status code that must not be sent (§7.4)
    truncated_frame,      ///< the transport ended in the middle of a frame
    closed,               ///< the closing handshake has started: no more data frames (§5.5.1)

    // Opening handshake (RFC 6455 §4, RFC 9110/9112): the handshake fails.
    head_too_large,     ///< HTTP head does not fit max_head_size (server answers 431)
    too_many_headers,   ///< more than max_headers header lines (server answers 431)
    bad_request_line,   ///< malformed request line or status line (400)
    bad_header_line,    ///< malformed header line, or obsolete line folding (400)
    bad_method,         ///< request method is not GET (§4.1; 400)
    bad_http_version,   ///< not HTTP/1.1 (§4.1; 400)
    missing_host,       ///< no Host header, or more than one (RFC 9112 §3.2; 400)
    wrong_host,         ///< Host is not the configured host (404)
    wrong_path,         ///< request target is not the configured path (404)
    missing_upgrade,    ///< Upgrade does not list `websocket` (§4.2.1; 400)
    missing_connection, ///< Connection does not list `Upgrade` (§4.2.1; 400)
    missing_version,    ///< no Sec-WebSocket-Version header (§4.2.1; 400)
    bad_version,        ///< Sec-WebSocket-Version is not 13 (§4.4; 426)
    bad_key,            ///< Sec-WebSocket-Key missing, repeated, or not base64 of 16 bytes (400)
    bad_status,         ///< the server answered with a status other than 101 (§4.1)
    bad_accept,         ///< Sec-WebSocket-Accept missing or wrong (§4.1)
    bad_protocol,       ///< the 101 names a subprotocol the client did not offer (§4.1)
};

/// True for `ok` and `need_more`, the two values that are not errors.
constexpr bool is_success(errc e) noexcept {
    return e == errc::ok || e == errc::need_more;
}

} // namespace kaminari::codec

#pragma once

// RFC 6455 §4 opening handshake over a ws_stream's next layer: the coroutine half of
// codec/handshake.hpp. Bytes that arrive in the same read after the HTTP head (a first frame
// behind the 101, or data a client pipelined behind its request) are handed to the ws_stream
// (set_leftover), never dropped.
//
// Timeouts are the caller's: wrap the call in a deadline (10 s in the apps).

#include <kaminari/codec/handshake.hpp>
#include <kaminari/net/mask_keys.hpp>
#include <kaminari/net/stream.hpp>
#include <kaminari/net/ws_error.hpp>
#include <kaminari/net/ws_stream.hpp>
#include <kaminari/options.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace kaminari::net {

/// A client's upgrade request, made before it is sent: `bytes()` is what goes on the wire
/// (so it can also travel as TLS 1.3 early data), `key` what the response must answer.
struct ws_client_request {
    codec::sec_key key{};
    std::vector<std::uint8_t> buf;
    std::size_t len = 0;

    std::span<const std::uint8_t> bytes() const noexcept { return {buf.data(), len}; }
};

/// Makes the request for `opts.host` and `opts.path` with a fresh random Sec-WebSocket-Key.
/// Returns `codec::errc::head_too_large` when host + path do not fit a 4 KiB request. Throws
/// only if OpenSSL's RNG fails.
inline error_code make_client_request(const ws_options& opts, ws_client_request& req) {
    std::array<std::uint8_t, codec::sec_key_nonce_size> nonce{};
    random_bytes(nonce);
    req.key = codec::make_sec_key(nonce);
    req.buf.resize(codec::max_head_size);
    req.len = codec::encode_request(req.buf, opts.host, opts.path, codec::to_string_view(req.key));
    return req.len == 0 ? error_code(codec::errc::head_too_large) : error_code{};
}

/// Client side, second half: reads the response head to `req` (already sent, e.g. as early
/// data) and checks it. Errors as for ws_client_handshake(). `req` must outlive the call.
template <byte_stream Next>
asio::awaitable<error_code> ws_read_response(ws_stream<Next>& ws, const ws_client_request& req) {
    std::vector<std::uint8_t> buf(codec::max_head_size);
    std::size_t have = 0;
    for (;;) {
        auto [ec, n] = co_await ws.next_layer().read_some(std::span(buf).subspan(have));
        if (ec) {
            co_return ec;
        }
        have += n;
        const codec::response_result r =
            codec::parse_response(std::span(buf.data(), have), codec::to_string_view(req.key));
        if (r.err == codec::errc::need_more) {
            continue; // a full buffer is head_too_large, never need_more
        }
        if (r.err != codec::errc::ok) {
            co_return error_code(r.err);
        }
        ws.set_leftover(std::span(buf.data() + r.consumed, have - r.consumed));
        co_return error_code{};
    }
}

/// Client side: sends `GET opts.path` for `opts.host` with a fresh random Sec-WebSocket-Key,
/// reads the response head (at most codec::max_head_size bytes) and checks it.
///
/// Returns an empty error_code when the server switched protocols; otherwise the next layer's
/// error, `asio::error::eof` if the server closed first, or a codec::errc (compares equal to
/// `ws_condition::handshake_failed`): `bad_status` (e.g. a 404), `bad_accept`,
/// `head_too_large` (also when host + path do not fit a 4 KiB request), ... The caller closes
/// the stream on error. `ws` and `opts` must outlive the call (the caller co_awaits it).
/// Throws only if OpenSSL's RNG fails.
template <byte_stream Next>
asio::awaitable<error_code> ws_client_handshake(ws_stream<Next>& ws, const ws_options& opts) {
    ws_client_request req;
    if (auto ec = make_client_request(opts, req)) {
        co_return ec;
    }
    if (auto [ec, n] = co_await ws.next_layer().write(req.bytes(), {}); ec) {
        co_return ec;
    }
    co_return co_await ws_read_response(ws, req);
}

/// How long a server lingers before its close frame towards a client that is not kaminaric,
/// once everything sent before it has been acknowledged (see ws_stream::set_close_linger).
/// v2ray-plugin's own server keeps a finished connection about this long.
inline constexpr std::chrono::milliseconds third_party_close_linger{1000};

/// Server side: reads the upgrade request head (at most codec::max_head_size bytes) and checks
/// it against `opts.host` and `opts.path` (see codec::parse_request for the exact rules).
///
/// On success sends `101 Switching Protocols` and returns an empty error_code; a client that did
/// not announce `Kaminari-Half-Close: 1` gets third_party_close_linger. On a refusal
/// sends what a web server would — 404 for a wrong host or path, 426 with
/// `Sec-WebSocket-Version: 13` for a wrong version, 431 for an oversized head, 400 otherwise —
/// then shuts down the sending side (so the response is not lost to a reset when the caller
/// closes) and returns the codec::errc (equal to `ws_condition::handshake_failed`). Also
/// returns the next layer's error, or `asio::error::eof` when the client closes first. The
/// caller closes the stream on error. `ws` and `opts` must outlive the call.
template <byte_stream Next>
asio::awaitable<error_code> ws_server_handshake(ws_stream<Next>& ws, const ws_options& opts) {
    std::vector<std::uint8_t> buf(codec::max_head_size);
    std::size_t have = 0;
    codec::request_result r;
    for (;;) {
        auto [ec, n] = co_await ws.next_layer().read_some(std::span(buf).subspan(have));
        if (ec) {
            co_return ec;
        }
        have += n;
        r = codec::parse_request(std::span(buf.data(), have), opts.host, opts.path);
        if (r.err != codec::errc::need_more) {
            break; // a full buffer is head_too_large, never need_more
        }
    }

    std::array<std::uint8_t, 512> out;
    if (r.err != codec::errc::ok) {
        const std::size_t len = codec::encode_error_response(out, r.err);
        if (auto [ec, n] = co_await ws.next_layer().write({}, std::span(out.data(), len)); !ec) {
            co_await ws.next_layer().shutdown_send();
        }
        co_return error_code(r.err);
    }
    const std::size_t len = codec::encode_accept_response(out, r.key);
    if (!r.half_close) {
        ws.set_close_linger(third_party_close_linger);
    }
    ws.set_leftover(std::span(buf.data() + r.consumed, have - r.consumed));
    auto [ec, n] = co_await ws.next_layer().write({}, std::span(out.data(), len));
    co_return ec;
}

} // namespace kaminari::net

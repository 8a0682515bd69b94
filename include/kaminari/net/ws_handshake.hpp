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
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace kaminari::net {

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
    std::array<std::uint8_t, codec::sec_key_nonce_size> nonce{};
    random_bytes(nonce);
    const codec::sec_key key = codec::make_sec_key(nonce);

    std::vector<std::uint8_t> buf(codec::max_head_size);
    const std::size_t len =
        codec::encode_request(buf, opts.host, opts.path, codec::to_string_view(key));
    if (len == 0) {
        co_return error_code(codec::errc::head_too_large);
    }
    if (auto [ec, n] = co_await ws.next_layer().write({}, std::span(buf.data(), len)); ec) {
        co_return ec;
    }

    std::size_t have = 0;
    for (;;) {
        auto [ec, n] = co_await ws.next_layer().read_some(std::span(buf).subspan(have));
        if (ec) {
            co_return ec;
        }
        have += n;
        const codec::response_result r =
            codec::parse_response(std::span(buf.data(), have), codec::to_string_view(key));
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

/// Server side: reads the upgrade request head (at most codec::max_head_size bytes) and checks
/// it against `opts.host` and `opts.path` (see codec::parse_request for the exact rules).
///
/// On success sends `101 Switching Protocols` and returns an empty error_code. On a refusal
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
    ws.set_leftover(std::span(buf.data() + r.consumed, have - r.consumed));
    auto [ec, n] = co_await ws.next_layer().write({}, std::span(out.data(), len));
    co_return ec;
}

} // namespace kaminari::net

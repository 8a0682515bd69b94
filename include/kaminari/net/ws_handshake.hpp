#pragma once

// RFC 6455 §4 opening handshake over a ws_stream's next layer: the coroutine half of
// codec/handshake.hpp. Bytes that arrive in the same read after the HTTP head (a first frame
// behind the 101, or data a client pipelined behind its request) are handed to the ws_stream
// (set_leftover), never dropped.
//
// Timeouts are the caller's: wrap the call in a deadline (10 s in the apps).

#include <kaminari/codec/base64.hpp>
#include <kaminari/codec/frame.hpp>
#include <kaminari/codec/handshake.hpp>
#include <kaminari/net/buffer_pool.hpp>
#include <kaminari/net/mask_keys.hpp>
#include <kaminari/net/stream.hpp>
#include <kaminari/net/ws_error.hpp>
#include <kaminari/net/ws_stream.hpp>
#include <kaminari/options.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace kaminari::net {

/// Handshake heads are read into a buffer borrowed from the thread's pool (16 KiB is a size it
/// keeps), not into a vector allocated and zeroed per connection.
inline constexpr std::size_t head_buffer_size = 16 * 1024;
static_assert(head_buffer_size >= codec::max_head_size);

/// A client's upgrade request, made before it is sent: `bytes()` is what goes on the wire
/// (so it can also travel as TLS 1.3 early data), `key` what the response must answer.
///
/// With early data (`ed`), `first` holds the app's first bytes: the first `early_size` of them
/// ride in `Sec-WebSocket-Protocol` (`protocol`, their base64url), the rest go as frames once
/// the 101 has arrived. If the server does not echo the header it ignored it, and all of
/// `first` goes as frames (ws_read_response()), so every byte arrives exactly once.
struct ws_client_request {
    codec::sec_key key{};
    std::vector<std::uint8_t> buf;
    std::size_t len = 0;
    std::vector<std::uint8_t> first; ///< the app's first bytes, to deliver after the request
    std::size_t early_size = 0;      ///< bytes of `first` carried in the request itself
    std::string protocol;            ///< the Sec-WebSocket-Protocol sent; empty: none
    bool early_echoed = false;       ///< set by ws_read_response(): the server took them

    std::span<const std::uint8_t> bytes() const noexcept { return {buf.data(), len}; }
};

/// Makes the request for `opts.host` and `opts.path` with a fresh random Sec-WebSocket-Key.
/// `first` (copied; may be empty) are the app's first bytes: up to `opts.early_data` of them
/// go into the request as early data, the rest are sent after the 101 (ws_read_response()).
/// `what` says what the websocket carries (codec::carriage: a UDP association, Mux.Cool).
/// Returns `codec::errc::head_too_large` when the request does not fit codec::max_head_size.
/// Throws only if OpenSSL's RNG fails (or on allocation failure).
inline error_code make_client_request(const ws_options& opts, ws_client_request& req,
                                      std::span<const std::uint8_t> first = {},
                                      codec::carriage what = codec::carriage::stream) {
    static_assert(codec::sec_key_nonce_size == 16);
    req.key = codec::make_sec_key(next_nonce());
    req.first.assign(first.begin(), first.end());
    req.early_size = std::min(first.size(), opts.early_data);
    req.protocol.resize(codec::base64url_encoded_size(req.early_size));
    codec::base64url_encode(first.first(req.early_size), req.protocol);
    req.early_echoed = false;
    // Room for the request line, the fixed headers and the variable parts; anything larger than
    // the head limit fails below either way.
    req.buf.resize(std::min(codec::max_head_size,
                            512 + opts.host.size() + opts.path.size() + req.protocol.size()));
    req.len = codec::encode_request(req.buf, opts.host, opts.path, codec::to_string_view(req.key),
                                    req.protocol, what);
    req.buf.resize(req.len);
    return req.len == 0 ? error_code(codec::errc::head_too_large) : error_code{};
}

/// Client side, second half: reads the response head to `req` (already sent, e.g. as early
/// data) and checks it; then sends what of `req.first` the server does not have yet as one
/// binary frame: the bytes past `req.early_size` when it echoed the early data
/// (`req.early_echoed` is then set), all of them when it did not. Errors as for
/// ws_client_handshake(), plus `bad_protocol` when the 101 names a subprotocol other than the
/// one offered (whether the server took the early data is then unknown: the connection
/// fails rather than risk losing or doubling bytes). `req` must outlive the call; its `first`
/// is masked in place when the client masks.
template <byte_stream Next>
asio::awaitable<error_code> ws_read_response(ws_stream<Next>& ws, ws_client_request& req) {
    const buffer_lease lease = borrow_buffer(head_buffer_size);
    const std::span<std::uint8_t> buf = lease.span().first(codec::max_head_size);
    std::size_t have = 0;
    for (;;) {
        auto [ec, n] = co_await ws.next_layer().read_some(buf.subspan(have));
        if (ec) {
            co_return ec;
        }
        have += n;
        const codec::response_result r = codec::parse_response(
            std::span(buf.data(), have), codec::to_string_view(req.key), req.protocol);
        if (r.err == codec::errc::need_more) {
            continue; // a full buffer is head_too_large, never need_more
        }
        if (r.err != codec::errc::ok) {
            co_return error_code(r.err);
        }
        ws.set_leftover(std::span(buf.data() + r.consumed, have - r.consumed));
        req.early_echoed = r.protocol_echoed;
        const std::size_t sent = req.early_echoed ? req.early_size : 0;
        if (sent < req.first.size()) {
            auto [wec, wn] = co_await ws.write({}, std::span(req.first).subspan(sent));
            co_return wec;
        }
        co_return error_code{};
    }
}

/// Client side: sends the prepared request `req` (make_client_request()), then completes as
/// ws_read_response(). `req` must outlive the call.
template <byte_stream Next>
asio::awaitable<error_code> ws_client_handshake(ws_stream<Next>& ws, ws_client_request& req) {
    if (auto [ec, n] = co_await ws.next_layer().write(req.bytes(), {}); ec) {
        co_return ec;
    }
    co_return co_await ws_read_response(ws, req);
}

/// Client side: sends `GET opts.path` for `opts.host` with a fresh random Sec-WebSocket-Key,
/// reads the response head (at most codec::max_head_size bytes) and checks it.
///
/// Returns an empty error_code when the server switched protocols; otherwise the next layer's
/// error, `asio::error::eof` if the server closed first, or a codec::errc (compares equal to
/// `ws_condition::handshake_failed`): `bad_status` (e.g. a 404), `bad_accept`,
/// `head_too_large` (also when host + path do not fit an 8 KiB request), ... The caller closes
/// the stream on error. `ws` and `opts` must outlive the call (the caller co_awaits it).
/// Throws only if OpenSSL's RNG fails.
template <byte_stream Next>
asio::awaitable<error_code> ws_client_handshake(ws_stream<Next>& ws, const ws_options& opts) {
    ws_client_request req;
    if (auto ec = make_client_request(opts, req)) {
        co_return ec;
    }
    co_return co_await ws_client_handshake(ws, req);
}

/// How long a server lingers before its close frame towards a client that is not kaminaric,
/// once everything sent before it has been acknowledged (see ws_stream::set_close_linger).
/// v2ray-plugin's own server keeps a finished connection about this long.
inline constexpr std::chrono::milliseconds third_party_close_linger{1000};

/// Server side: reads the upgrade request head (at most codec::max_head_size bytes) and checks
/// it against `opts.host` and `opts.path` (see codec::parse_request for the exact rules).
///
/// On success sends `101 Switching Protocols` and returns an empty error_code; a client that did
/// not announce `Kaminari-Half-Close: 1` gets third_party_close_linger. Early data in the
/// request (codec::request_result::early_data) is echoed in the 101 and becomes the first
/// bytes `ws` reads, ahead of any frame (it is handed to the stream as a first binary frame of
/// its own, masked with the zero key); `*early_size`, when given, is set to its size (0 for
/// none). On a refusal
/// sends what a web server would — 404 for a wrong host or path, 426 with
/// `Sec-WebSocket-Version: 13` for a wrong version, 431 for an oversized head, 400 otherwise —
/// then shuts down the sending side (so the response is not lost to a reset when the caller
/// closes) and returns the codec::errc (equal to `ws_condition::handshake_failed`). Also
/// returns the next layer's error, or `asio::error::eof` when the client closes first. The
/// caller closes the stream on error. `ws`, `opts` and `early_size` must outlive the call.
///
/// With `handed` (a server with a fallback site): nothing is answered to a request that is not
/// a valid upgrade; as soon as the bytes show it will not be one (codec::classify_request()),
/// they are copied to `*handed` and the reason is returned, for the caller to pass the
/// connection on with them.
///
/// `what`, when given, is set to what the request says the websocket carries; it is left
/// alone on error.
template <byte_stream Next>
asio::awaitable<error_code>
ws_server_handshake(ws_stream<Next>& ws, const ws_options& opts, std::size_t* early_size = nullptr,
                    std::vector<std::uint8_t>* handed = nullptr, codec::carriage* what = nullptr) {
    const buffer_lease lease = borrow_buffer(head_buffer_size);
    const std::span<std::uint8_t> buf = lease.span().first(codec::max_head_size);
    std::size_t have = 0;
    codec::request_result r;
    for (;;) {
        auto [ec, n] = co_await ws.next_layer().read_some(buf.subspan(have));
        if (ec) {
            co_return ec;
        }
        have += n;
        if (handed != nullptr) {
            const codec::errc verdict =
                codec::classify_request(std::span(buf.data(), have), opts.host, opts.path);
            if (verdict == codec::errc::need_more) {
                continue;
            }
            if (verdict != codec::errc::ok) {
                handed->assign(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(have));
                co_return error_code(verdict);
            }
        }
        r = codec::parse_request(std::span(buf.data(), have), opts.host, opts.path);
        if (r.err != codec::errc::need_more) {
            break; // a full buffer is head_too_large, never need_more
        }
    }

    std::vector<std::uint8_t> out(512 + r.early_data.size());
    if (r.err != codec::errc::ok) {
        const std::size_t len = codec::encode_error_response(out, r.err);
        if (auto [ec, n] = co_await ws.next_layer().write({}, std::span(out.data(), len)); !ec) {
            co_await ws.next_layer().shutdown_send();
        }
        co_return error_code(r.err);
    }
    const std::size_t len = codec::encode_accept_response(out, r.key, r.early_data);
    if (!r.half_close) {
        ws.set_close_linger(third_party_close_linger);
    }
    const auto rest = std::span(buf.data() + r.consumed, have - r.consumed);
    if (r.early_data_size != 0) {
        // The early data goes first, as a frame as the client would have sent it: binary, FIN,
        // masked with the all-zero key (the payload stays as it is).
        const codec::frame_header h{true, codec::opcode::binary, true, {}, r.early_data_size};
        std::array<std::uint8_t, codec::max_header_size> head{};
        const std::size_t hn = codec::encode_header(h, head);
        std::vector<std::uint8_t> lead(hn + r.early_data_size + rest.size());
        std::copy_n(head.begin(), hn, lead.begin());
        codec::base64_decode(r.early_data, std::span(lead).subspan(hn, r.early_data_size));
        std::copy(rest.begin(), rest.end(),
                  lead.begin() + static_cast<std::ptrdiff_t>(hn + r.early_data_size));
        ws.set_leftover(lead);
    } else {
        ws.set_leftover(rest);
    }
    if (early_size != nullptr) {
        *early_size = r.early_data_size;
    }
    if (what != nullptr) {
        *what = r.what;
    }
    auto [ec, n] = co_await ws.next_layer().write({}, std::span(out.data(), len));
    co_return ec;
}

} // namespace kaminari::net

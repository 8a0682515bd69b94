#include "kaminari/net/tunnel.hpp"

#include <kaminari/log.hpp>
#include <kaminari/net/buffer_pool.hpp>
#include <kaminari/net/listener.hpp>
#include <kaminari/net/relay.hpp>
#include <kaminari/net/splice.hpp>
#include <kaminari/net/timeout.hpp>
#include <kaminari/net/tls_stream.hpp>
#include <kaminari/net/ws_handshake.hpp>
#include <kaminari/net/ws_stream.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <optional>
#include <string>
#include <sys/socket.h>
#include <variant>

namespace kaminari::net {

namespace {

using tcp = asio::ip::tcp;
using clock = std::chrono::steady_clock;

// How long kaminaric waits for the app's first bytes so they can ride in TLS 1.3 early data.
// It runs alongside the TCP connect, so it costs nothing when the remote is this far away.
constexpr auto early_data_wait = std::chrono::milliseconds(50);

std::string peer_of(const tcp::socket& s) {
    error_code ec;
    const auto ep = s.remote_endpoint(ec);
    if (ec) {
        return "?";
    }
    return endpoint{ep.address().to_string(), ep.port()}.to_string();
}

void log_end(std::uint64_t id, const relay_result& r) {
    if (r.idle) {
        log::debug("#{} idle timeout: no bytes moved either way; closing", id);
    }
    log::debug("#{} closed: {} bytes up, {} bytes down{}{}", id, r.a_to_b.bytes, r.b_to_a.bytes,
               r.a_to_b.ec ? fmt::format("; up: {}", r.a_to_b.ec.message()) : std::string(),
               r.b_to_a.ec ? fmt::format("; down: {}", r.b_to_a.ec.message()) : std::string());
}

// Milliseconds since data last went either way on `s`, from the kernel's TCP_INFO (last data
// sent, last data received); nullopt once the socket is closed.
std::optional<std::uint32_t> quiet_ms(tcp::socket& s) noexcept {
    if (!s.is_open()) {
        return std::nullopt;
    }
    ::tcp_info info{};
    socklen_t len = sizeof info;
    if (::getsockopt(s.native_handle(), IPPROTO_TCP, TCP_INFO, &info, &len) != 0) {
        return std::nullopt;
    }
    return std::min(info.tcpi_last_data_sent, info.tcpi_last_data_recv);
}

// The idle watchdog of the splice relay. splice(2) moves bytes inside the kernel and reports
// nothing until it ends, so activity is read from the sockets themselves: one getsockopt per
// socket per check, and a check at most once per `limit` while data flows. When both sockets
// have been quiet for `limit`, closes them, which ends splice_relay(), and then gives the relay
// another `limit` to notice before returning (which makes `||` cancel it). Cancelled when the
// relay ends first.
asio::awaitable<void> close_sockets_when_idle(tcp::socket& a, tcp::socket& b,
                                              std::chrono::milliseconds limit, bool& idle) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    for (;;) {
        const auto qa = quiet_ms(a);
        const auto qb = quiet_ms(b);
        auto wait = limit;
        if (qa && qb) {
            const std::chrono::milliseconds quiet{std::min(*qa, *qb)};
            if (quiet >= limit) {
                idle = true;
                error_code ignored;
                a.close(ignored);
                b.close(ignored);
                timer.expires_after(limit);
                co_await timer.async_wait(use_tuple);
                co_return;
            }
            wait = limit - quiet;
        }
        timer.expires_after(wait);
        auto [ec] = co_await timer.async_wait(use_tuple);
        if (ec) {
            co_return;
        }
    }
}

// splice_relay() beside its idle watchdog. The watchdog closes the sockets rather than winning
// the `||`, so the relay's own result (bytes, errors) normally survives.
asio::awaitable<relay_result> splice_watched(tcp::socket& a, tcp::socket& b,
                                             std::chrono::milliseconds idle_limit) {
    using namespace asio::experimental::awaitable_operators;
    bool idle = false;
    auto ended = co_await (splice_relay(a, b) || close_sockets_when_idle(a, b, idle_limit, idle));
    relay_result r;
    if (ended.index() == 0) {
        r = std::get<0>(std::move(ended));
    } else {
        // The watchdog closed both sockets and returned before the relay noticed.
        r.a_to_b.ec = r.b_to_a.ec = asio::error::timed_out;
    }
    r.idle = idle;
    co_return r;
}

// splice_relay() under `idle_limit` (zero: none).
asio::awaitable<relay_result> splice_with_idle(tcp::socket& a, tcp::socket& b,
                                               std::chrono::milliseconds idle_limit) {
    if (idle_limit.count() <= 0) {
        return splice_relay(a, b);
    }
    return splice_watched(a, b, idle_limit);
}

// Connects to the remote; a failure is logged here, once, and the caller just ends.
asio::awaitable<std::optional<tcp::socket>>
dial(const endpoint& remote, std::chrono::milliseconds limit, std::uint64_t id) {
    auto [ec, socket] = co_await connect_remote(remote, limit);
    if (ec) {
        log::warn("#{} connect to {} failed: {}", id, remote.to_string(), ec.message());
        co_return std::nullopt;
    }
    co_return std::optional<tcp::socket>(std::move(socket));
}

// One debug line per TLS handshake: resumed or not, and what became of 0-RTT data.
void log_tls_session(std::uint64_t id, const tls::engine& engine, std::size_t early_offered) {
    if (!log::enabled(log::level::debug)) {
        return;
    }
    log::debug(
        "#{} TLS session {}{}", id, engine.session_reused() ? "resumed" : "new",
        engine.early_data_accepted()
            ? "; early data accepted"
            : (early_offered != 0 && engine.session_reused() ? "; early data rejected" : ""));
}

clock::duration remaining(clock::time_point deadline) {
    return std::max(clock::duration::zero(), deadline - clock::now());
}

// Runs one handshake step within what is left of the deadline; a timeout is an error.
asio::awaitable<error_code> step(asio::awaitable<error_code> hs, clock::time_point deadline) {
    auto r = co_await with_timeout(std::move(hs), remaining(deadline));
    co_return r ? *r : error_code(asio::error::timed_out);
}

// The websocket layer (if configured) over `lower`, then the relay with the app. `sent` is an
// upgrade request already sent (as TLS early data) whose response is still to be read;
// `early_up` counts app bytes already delivered in the TLS handshake (for the log).
template <byte_stream Lower>
asio::awaitable<void> client_finish(tcp_stream& app, Lower& lower, std::uint64_t id,
                                    const client_config& cfg, clock::time_point deadline,
                                    const ws_client_request* sent = nullptr,
                                    std::uint64_t early_up = 0) {
    if (!cfg.opts.ws) {
        auto r = co_await relay(app, lower, cfg.opts.common.idle_timeout);
        r.a_to_b.bytes += early_up;
        log_end(id, r);
        co_return;
    }
    ws_stream<Lower> ws(std::move(lower), codec::role::client, cfg.opts.ws->mask);
    auto handshake =
        sent != nullptr ? ws_read_response(ws, *sent) : ws_client_handshake(ws, *cfg.opts.ws);
    if (auto ec = co_await step(std::move(handshake), deadline)) {
        log::warn("#{} websocket handshake with {} failed: {}", id, cfg.remote.to_string(),
                  ec.message());
        ws.close();
        co_return;
    }
    log_end(id, co_await relay(app, ws, cfg.opts.common.idle_timeout));
}

template <byte_stream Lower>
asio::awaitable<void> server_finish(Lower& lower, std::uint64_t id, const std::string& peer,
                                    const server_config& cfg, clock::time_point deadline);

asio::awaitable<std::optional<io_result>> read_first(tcp_stream& app, std::span<std::uint8_t> buf) {
    co_return co_await with_timeout(app.read_some(buf), early_data_wait);
}

} // namespace

asio::awaitable<void> client_connection(tcp::socket socket, std::uint64_t id,
                                        const client_config& cfg) {
    using namespace asio::experimental::awaitable_operators;
    const std::string peer = peer_of(socket);
    log::debug("#{} accepted from {}", id, peer);
    tcp_stream app(std::move(socket));

    // With 0rtt, TLS 1.3 early data carries the first bytes that can go: for wss the websocket
    // upgrade request (the app's bytes must wait for the 101), for tls the app's first bytes.
    const bool zero_rtt = cfg.tls && cfg.tls->options().early_data;
    ws_client_request request;
    if (zero_rtt && cfg.opts.ws) {
        if (auto rec = make_client_request(*cfg.opts.ws, request)) {
            log::warn("#{} websocket request: {}", id, rec.message());
            co_return;
        }
    }
    std::optional<tcp::socket> up_socket;
    buffer_lease first;
    std::size_t first_len = 0;
    if (zero_rtt && !cfg.opts.ws) {
        // Read the app's first bytes while connecting: they become TLS 1.3 early data (the
        // server takes at most 16 KiB of it).
        first = borrow_buffer(relay_min_buffer_size);
        auto [conn, got] = co_await (dial(cfg.remote, cfg.opts.common.connect_timeout, id) &&
                                     read_first(app, first.span()));
        up_socket = std::move(conn);
        // An app that half-closes at once is carried as such: the relay reads its end again.
        if (got && got->ec && got->ec != asio::error::eof) {
            log::debug("#{} app failed before sending: {}", id, got->ec.message());
            co_return;
        }
        first_len = got ? got->n : 0;
    } else {
        up_socket = co_await dial(cfg.remote, cfg.opts.common.connect_timeout, id);
    }
    if (!up_socket) {
        co_return;
    }
    if (!cfg.tls && !cfg.opts.ws) {
        log_end(id,
                co_await splice_with_idle(app.socket(), *up_socket, cfg.opts.common.idle_timeout));
        co_return;
    }
    const auto deadline = clock::now() + cfg.opts.common.handshake_timeout;
    if (!cfg.tls) {
        tcp_stream up(std::move(*up_socket));
        co_await client_finish(app, up, id, cfg, deadline);
        co_return;
    }
    tls_stream<tcp_stream> up(tcp_stream(std::move(*up_socket)), cfg.tls->make_engine());
    const auto early = cfg.opts.ws ? request.bytes()
                                   : std::span<const std::uint8_t>(first.span().first(first_len));
    if (auto hec = co_await step(up.handshake_client(early), deadline)) {
        log::warn("#{} TLS handshake with {} failed: {}", id, cfg.remote.to_string(),
                  hec.message());
        up.close();
        co_return;
    }
    first.release();
    log_tls_session(id, up.engine(), early.size());
    co_await client_finish(app, up, id, cfg, deadline, request.len != 0 ? &request : nullptr,
                           first_len);
}

namespace {

template <byte_stream Lower>
asio::awaitable<void> server_relay(Lower& down, std::uint64_t id, const server_config& cfg) {
    auto up_socket = co_await dial(cfg.remote, cfg.opts.common.connect_timeout, id);
    if (!up_socket) {
        down.close();
        co_return;
    }
    tcp_stream up(std::move(*up_socket));
    log_end(id, co_await relay(down, up, cfg.opts.common.idle_timeout));
}

template <byte_stream Lower>
asio::awaitable<void> server_finish(Lower& lower, std::uint64_t id, const std::string& peer,
                                    const server_config& cfg, clock::time_point deadline) {
    if (!cfg.opts.ws) {
        co_await server_relay(lower, id, cfg);
        co_return;
    }
    ws_stream<Lower> ws(std::move(lower), codec::role::server);
    if (auto ec = co_await step(ws_server_handshake(ws, *cfg.opts.ws), deadline)) {
        // Probers and scanners end up here: informative, not alarming.
        log::info("#{} websocket handshake from {} failed: {}", id, peer, ec.message());
        ws.close();
        co_return;
    }
    co_await server_relay(ws, id, cfg);
}

} // namespace

asio::awaitable<void> server_connection(tcp::socket socket, std::uint64_t id,
                                        const server_config& cfg) {
    const std::string peer = peer_of(socket);
    log::debug("#{} accepted from {}", id, peer);
    if (!cfg.tls && !cfg.opts.ws) {
        auto up_socket = co_await dial(cfg.remote, cfg.opts.common.connect_timeout, id);
        if (!up_socket) {
            co_return;
        }
        log_end(id, co_await splice_with_idle(socket, *up_socket, cfg.opts.common.idle_timeout));
        co_return;
    }
    const auto deadline = clock::now() + cfg.opts.common.handshake_timeout;
    tcp_stream down(std::move(socket));
    if (!cfg.tls) {
        co_await server_finish(down, id, peer, cfg, deadline);
        co_return;
    }
    tls_stream<tcp_stream> tls(std::move(down), cfg.tls->make_engine());
    if (auto ec = co_await step(tls.handshake_server(), deadline)) {
        log::info("#{} TLS handshake from {} failed: {}", id, peer, ec.message());
        tls.close();
        co_return;
    }
    log_tls_session(id, tls.engine(), 0);
    co_await server_finish(tls, id, peer, cfg, deadline);
}

} // namespace kaminari::net

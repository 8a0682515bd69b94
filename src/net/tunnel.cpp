#include "kaminari/net/tunnel.hpp"

#include <kaminari/log.hpp>
#include <kaminari/net/buffer_pool.hpp>
#include <kaminari/net/dial.hpp>
#include <kaminari/net/hand_over.hpp>
#include <kaminari/net/metrics.hpp>
#include <kaminari/net/mux_client.hpp>
#include <kaminari/net/mux_server.hpp>
#include <kaminari/net/pool.hpp>
#include <kaminari/net/proxy_header.hpp>
#include <kaminari/net/relay.hpp>
#include <kaminari/net/socket_options.hpp>
#include <kaminari/net/splice.hpp>
#include <kaminari/net/timeout.hpp>
#include <kaminari/net/tls_stream.hpp>
#include <kaminari/net/udp_server.hpp>
#include <kaminari/net/ws_handshake.hpp>
#include <kaminari/net/ws_stream.hpp>
#include <kaminari/tls/hello_ahead.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <optional>
#include <string>
#include <sys/socket.h>

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

// The peer of a layered stream: its TCP socket's. Asked only when a line names it, so a
// connection whose log says nothing of its peer costs no getpeername().
std::string peer_of(const tcp_stream& s) {
    return peer_of(s.socket());
}
template <class Layer>
std::string peer_of(const Layer& s) {
    return peer_of(s.next_layer());
}

void log_accepted(std::uint64_t id, const tcp::socket& s) {
    if (log::enabled(log::level::debug)) {
        log::debug("#{} accepted from {}", id, peer_of(s));
    }
}

void log_end(std::uint64_t id, const relay_result& r) {
    metrics::add(metrics::closed);
    metrics::add(metrics::bytes_upstream, r.a_to_b.bytes);
    metrics::add(metrics::bytes_downstream, r.b_to_a.bytes);
    if (r.idle) {
        metrics::add(metrics::idle_closed);
    }
    if (!log::enabled(log::level::debug)) {
        return;
    }
    if (r.idle) {
        log::debug("#{} idle timeout: no bytes moved either way; closing", id);
    }
    log::debug("#{} closed: {} bytes up, {} bytes down{}{}", id, r.a_to_b.bytes, r.b_to_a.bytes,
               r.a_to_b.ec ? fmt::format("; up: {}", r.a_to_b.ec.message()) : std::string(),
               r.b_to_a.ec ? fmt::format("; down: {}", r.b_to_a.ec.message()) : std::string());
}

// `ping=`: beside a websocket relay, pings a connection that has been quiet both ways for
// `every`, and closes it when nothing at all comes back within `every` more (a peer that
// vanished without a FIN, a middlebox that dropped the connection). Also keeps CDNs with idle
// limits from cutting a quiet connection. Reads the kernel's TCP_INFO: no per-frame work.
struct keepalive_state {
    explicit keepalive_state(const asio::any_io_executor& exec)
        : timer(exec) {}
    asio::steady_timer timer;
    bool done = false;
};

template <class Lower>
asio::awaitable<void> keepalive(ws_stream<Lower>& ws, std::chrono::milliseconds every,
                                keepalive_state& st, std::uint64_t id) {
    using std::chrono::milliseconds;
    const auto tick = std::max(every / 4, milliseconds(50));
    bool waiting = false;
    clock::time_point ping_at{};
    std::uint64_t in_at_ping = 0;
    while (!st.done) {
        st.timer.expires_after(tick);
        co_await st.timer.async_wait(use_tuple);
        if (st.done) {
            break;
        }
        const auto quiet = quiet_times(bottom_socket(ws));
        if (!quiet) {
            break;
        }
        const milliseconds since_in(quiet->since_in_ms);
        const milliseconds since_out(quiet->since_out_ms);
        const auto now = clock::now();
        if (waiting) {
            const auto since_ping = std::chrono::duration_cast<milliseconds>(now - ping_at);
            if (ws.bytes_in() != in_at_ping) {
                waiting = false; // something came back after the ping
            } else if (since_ping >= every) {
                log::info("#{} nothing from the peer within {} s of a ping; closing", id,
                          every.count() / 1000.0);
                ws.close();
                break;
            }
            continue;
        }
        if (std::min(since_in, since_out) >= every) {
            waiting = true;
            ping_at = now;
            in_at_ping = ws.bytes_in();
            if (co_await ws.send_ping()) {
                break;
            }
        }
    }
}

template <class S>
constexpr bool is_ws_stream = false;
template <class Lower>
constexpr bool is_ws_stream<ws_stream<Lower>> = true;

template <byte_stream A, byte_stream B>
asio::awaitable<relay_result> relay_then_stop(A& a, B& b, std::chrono::milliseconds idle,
                                              keepalive_state& st) {
    auto r = co_await relay(a, b, idle);
    st.done = true;
    st.timer.cancel();
    co_return r;
}

// The relay of `a` and `b`, one of which is `ws`, with the keepalive beside it when `ping=` is
// set.
template <byte_stream A, byte_stream B, class Lower>
asio::awaitable<relay_result> ws_relay(A& a, B& b, ws_stream<Lower>& ws, const common_options& opts,
                                       std::uint64_t id) {
    using namespace asio::experimental::awaitable_operators;
    if (opts.ping.count() == 0) {
        co_return co_await relay(a, b, opts.idle_timeout);
    }
    keepalive_state st(ws.get_executor());
    co_return co_await (relay_then_stop(a, b, opts.idle_timeout, st) &&
                        keepalive(ws, opts.ping, st, id));
}

// A connect's outcome as the socket, or nullopt with the failure counted and logged.
std::optional<tcp::socket> dialed(std::pair<error_code, tcp::socket> r, const endpoint& remote,
                                  std::uint64_t id) {
    if (r.first) {
        metrics::add(metrics::connect_failed);
        log::warn("#{} connect to {} failed: {}", id, remote.to_string(), r.first.message());
        return std::nullopt;
    }
    return std::optional<tcp::socket>(std::move(r.second));
}

// Connects to the remote; a failure is logged here, once, and the caller just ends.
asio::awaitable<std::optional<tcp::socket>> dial(const endpoint& remote,
                                                 std::chrono::milliseconds limit, std::uint64_t id,
                                                 dial_options opts = {}) {
    auto r = co_await connect_remote(remote, limit, opts);
    co_return dialed(std::move(r), remote, id);
}

// One debug line per TLS handshake: resumed or not, and what became of 0-RTT data.
// `made_ahead`: the client's ClientHello was made before its connection (tls::hello_ahead).
// `behind`: the app's bytes sent in the same write as the client's Finished.
// `target_ahead`: the server's target was dialed during the handshake.
void log_tls_session(std::uint64_t id, const tls::engine& engine, std::size_t early_offered,
                     bool made_ahead = false, std::size_t behind = 0, bool target_ahead = false) {
    if (!log::enabled(log::level::debug)) {
        return;
    }
    log::debug("#{} TLS session {}{}{}{}{}", id, engine.session_reused() ? "resumed" : "new",
               engine.early_data_accepted()
                   ? "; early data accepted"
                   : (early_offered != 0 && engine.session_reused() ? "; early data rejected" : ""),
               made_ahead ? "; ClientHello made ahead" : "",
               behind != 0 ? fmt::format("; {} bytes with its Finished", behind) : std::string(),
               target_ahead ? "; target dialed during the handshake" : "");
}

clock::duration remaining(clock::time_point deadline) {
    return std::max(clock::duration::zero(), deadline - clock::now());
}

// Runs one handshake step on `s` within what is left of the deadline; at the deadline `s` is
// closed and the step fails with timed_out.
template <class Stream>
asio::awaitable<error_code> step(Stream& s, asio::awaitable<error_code> hs, clock::time_point at) {
    const deadline limit(s.get_executor(), remaining(at), [&s] { s.close(); });
    const error_code ec = co_await std::move(hs);
    co_return limit.expired() ? error_code(asio::error::timed_out) : ec;
}

// Reads the app's first bytes for at most early_data_wait; nullopt when none came by then (the
// read is cancelled; the app's socket stays usable).
asio::awaitable<std::optional<io_result>> read_first(tcp_stream& app, std::span<std::uint8_t> buf) {
    const deadline limit(app.get_executor(), early_data_wait, [&app] {
        error_code ignored;
        app.socket().cancel(ignored);
    });
    const io_result r = co_await app.read_some(buf);
    if (r.ec == asio::error::operation_aborted && limit.expired()) {
        co_return std::nullopt;
    }
    co_return r;
}

// Whether a read of the app's first bytes failed (logged): with an error other than end of
// stream (an app that half-closes at once is carried as such: the relay reads its end again)
// or nothing there yet.
bool app_failed(std::uint64_t id, const error_code& ec) {
    if (!ec || ec == asio::error::eof || ec == asio::error::would_block) {
        return false;
    }
    log::debug("#{} app failed before sending: {}", id, ec.message());
    return true;
}

// The websocket client handshake on `ws` within the deadline for `req`, which is sent here
// unless `sent` (it went as TLS early data, or right behind the TLS handshake); false (logged,
// `ws` closed) when it failed. `req` is emptied afterwards: a connection keeps no request.
template <byte_stream Lower>
asio::awaitable<bool> client_ws_handshake(ws_stream<Lower>& ws, std::uint64_t id,
                                          const client_config& cfg, clock::time_point deadline,
                                          ws_client_request& req, bool sent) {
    auto handshake = sent ? ws_read_response(ws, req) : ws_client_handshake(ws, req);
    const error_code ec = co_await step(ws, std::move(handshake), deadline);
    if (!ec && req.early_size != 0 && !req.early_echoed) {
        log::debug("#{} websocket early data not echoed; resending {} bytes as frames", id,
                   req.early_size);
    }
    req = ws_client_request{};
    if (ec) {
        metrics::add(metrics::websocket_failed);
        log::warn("#{} websocket handshake with {} failed: {}", id, cfg.remote.to_string(),
                  ec.message());
        ws.close();
        co_return false;
    }
    co_return true;
}

// The upgrade request, carrying up to `ed` bytes of `first` (the app's first bytes); false
// (logged) when it cannot be made.
bool make_ws_request(std::uint64_t id, const ws_options& opts, ws_client_request& req,
                     std::span<const std::uint8_t> first,
                     codec::carriage what = codec::carriage::stream) {
    if (auto ec = make_client_request(opts, req, first, what)) {
        log::warn("#{} websocket request: {}", id, ec.message());
        return false;
    }
    if (req.early_size != 0) {
        log::debug("#{} websocket early data: {} bytes in the upgrade request", id, req.early_size);
    }
    return true;
}

// A websocket handshake on a connection that is already up (a warm one, pool=): with `ed` the
// app's first bytes are awaited here (up to early_data_wait) for the upgrade request, and
// `early_up` is how many went in it (for the counts). The request and the buffer live in this
// frame, gone once the handshake is done.
template <byte_stream Lower>
asio::awaitable<bool> client_ws_upgrade(tcp_stream& app, ws_stream<Lower>& ws, std::uint64_t id,
                                        const client_config& cfg, clock::time_point deadline,
                                        std::uint64_t& early_up) {
    buffer_lease first;
    std::size_t first_len = 0;
    if (cfg.opts.ws->early_data != 0) {
        first = borrow_buffer(relay_min_buffer_size);
        auto got = co_await read_first(app, first.span());
        if (got && app_failed(id, got->ec)) {
            ws.close();
            co_return false;
        }
        first_len = got ? got->n : 0;
    }
    ws_client_request request;
    if (!make_ws_request(id, *cfg.opts.ws, request, first.span().first(first_len))) {
        ws.close();
        co_return false;
    }
    first.release();
    early_up = first_len;
    co_return co_await client_ws_handshake(ws, id, cfg, deadline, request, false);
}

// The websocket layer (if configured) over `lower`, then the relay with the app. `request` is
// the upgrade request (with the app's first bytes, if read), already sent over `lower`, whose
// response is still to be read; without it (a warm connection) the request is made and sent
// here (client_ws_upgrade()). `early_up` counts app bytes already delivered in the handshakes
// (for the log).
template <byte_stream Lower>
asio::awaitable<void> client_finish(tcp_stream& app, Lower& lower, std::uint64_t id,
                                    const client_config& cfg, clock::time_point deadline,
                                    ws_client_request* request = nullptr,
                                    std::uint64_t early_up = 0, std::uint64_t early_down = 0) {
    if (!cfg.opts.ws) {
        auto r = co_await relay(app, lower, cfg.opts.common.idle_timeout);
        r.a_to_b.bytes += early_up;
        r.b_to_a.bytes += early_down;
        log_end(id, r);
        co_return;
    }
    ws_stream<Lower> ws(std::move(lower), codec::role::client, cfg.opts.ws->mask);
    const bool open = request != nullptr
                          ? co_await client_ws_handshake(ws, id, cfg, deadline, *request, true)
                          : co_await client_ws_upgrade(app, ws, id, cfg, deadline, early_up);
    if (open) {
        auto r = co_await ws_relay(app, ws, ws, cfg.opts.common, id);
        r.a_to_b.bytes += early_up;
        log_end(id, r);
    }
}

template <byte_stream Lower>
asio::awaitable<void> server_finish(Lower& lower, std::uint64_t id, const server_config& cfg,
                                    clock::time_point deadline);

// Waits until `lower` has something to read (the first byte of a request), for at most
// server_request_wait; at once when bytes are already there.
template <byte_stream Lower>
asio::awaitable<error_code> wait_for_request(Lower& lower) {
    if constexpr (std::is_same_v<Lower, tcp_stream>) {
        error_code ec;
        if (lower.socket().available(ec) != 0 || ec) {
            co_return ec;
        }
    }
    const deadline limit(lower.get_executor(), server_request_wait, [&lower] { lower.close(); });
    const error_code ec = co_await lower.wait_readable();
    co_return limit.expired() ? error_code(asio::error::timed_out) : ec;
}

// Connects to the remote while reading the app's first bytes into `first` (borrowed here) for
// up to early_data_wait, so they can go with the first flight; `first_len` is how many came.
// nullopt when the connect or the app failed (logged).
asio::awaitable<std::optional<tcp::socket>> dial_reading_first(tcp_stream& app, std::uint64_t id,
                                                               const client_config& cfg,
                                                               buffer_lease& first,
                                                               std::size_t& first_len) {
    using namespace asio::experimental::awaitable_operators;
    first = borrow_buffer(relay_min_buffer_size);
    auto [conn, got] = co_await (
        dial(cfg.remote, cfg.opts.common.connect_timeout, id, {.fast_open = cfg.opts.common.tfo}) &&
        read_first(app, first.span()));
    if (got && app_failed(id, got->ec)) {
        co_return std::nullopt;
    }
    first_len = got ? got->n : 0;
    co_return std::move(conn);
}

// tcp, either program: the accepted socket spliced to the remote's.
template <class Config>
asio::awaitable<void> tcp_tunnel(tcp::socket socket, std::uint64_t id, const Config& cfg) {
    log_accepted(id, socket);
    auto up = co_await dial(cfg.remote, cfg.opts.common.connect_timeout, id);
    if (!up) {
        co_return;
    }
    log_end(id, co_await async_splice_relay(socket, *up, cfg.opts.common.idle_timeout,
                                            asio::use_awaitable));
}

// tcp with tfo, kaminaric: the app's first bytes (if it sends any within early_data_wait)
// ride in the SYN. An app that waits for the server to speak first gets an ordinary connect
// after that wait: a fast-open connect sends nothing until its first write.
asio::awaitable<void> client_tcp_fast_open(tcp::socket socket, std::uint64_t id,
                                           const client_config& cfg) {
    log_accepted(id, socket);
    tcp_stream app(std::move(socket));
    buffer_lease first = borrow_buffer(relay_min_buffer_size);
    auto got = co_await read_first(app, first.span());
    if (got && app_failed(id, got->ec)) {
        co_return;
    }
    const std::size_t first_len = got ? got->n : 0;
    auto up = co_await dial(cfg.remote, cfg.opts.common.connect_timeout, id,
                            {.fast_open = first_len != 0});
    if (!up) {
        co_return;
    }
    if (first_len != 0) {
        tcp_stream remote(std::move(*up));
        auto w = co_await write_all(remote, first.span().first(first_len));
        if (w.ec) {
            metrics::add(metrics::connect_failed);
            log::warn("#{} connect to {} failed: {}", id, cfg.remote.to_string(), w.ec.message());
            co_return;
        }
        up.emplace(std::move(remote.socket()));
    }
    first.release();
    // An app that half-closed at once is carried as such: the relay reads its end again.
    auto r = co_await async_splice_relay(app.socket(), *up, cfg.opts.common.idle_timeout,
                                         asio::use_awaitable);
    r.a_to_b.bytes += first_len;
    log_end(id, r);
}

// ws: connects and runs the websocket handshake, with the app's first bytes in the upgrade
// request when `ed` is set; the request and the first read's buffer live in this frame, gone
// once `ws` is open.
asio::awaitable<bool> client_ws_open(tcp_stream& app, std::uint64_t id, const client_config& cfg,
                                     std::optional<ws_stream<tcp_stream>>& ws) {
    std::optional<tcp::socket> up;
    buffer_lease first;
    std::size_t first_len = 0;
    if (cfg.opts.ws->early_data != 0) {
        up = co_await dial_reading_first(app, id, cfg, first, first_len);
    } else {
        // The upgrade request is the first write: with tfo it rides in the SYN.
        up = co_await dial(cfg.remote, cfg.opts.common.connect_timeout, id,
                           {.fast_open = cfg.opts.common.tfo});
    }
    if (!up) {
        co_return false;
    }
    const auto deadline = clock::now() + cfg.opts.common.handshake_timeout;
    ws_client_request request;
    if (!make_ws_request(id, *cfg.opts.ws, request, first.span().first(first_len))) {
        co_return false;
    }
    first.release();
    ws.emplace(tcp_stream(std::move(*up)), codec::role::client, cfg.opts.ws->mask);
    co_return co_await client_ws_handshake(*ws, id, cfg, deadline, request, false);
}

// ws: the websocket layer over the remote's TCP socket. The relay runs in this one frame (not
// client_finish()), which an idle connection holds for its whole life.
asio::awaitable<void> client_ws(tcp::socket socket, std::uint64_t id, const client_config& cfg) {
    log_accepted(id, socket);
    tcp_stream app(std::move(socket));
    std::optional<ws_stream<tcp_stream>> ws;
    if (co_await client_ws_open(app, id, cfg, ws)) {
        log_end(id, co_await ws_relay(app, *ws, *ws, cfg.opts.common, id));
    }
}

// Has `ahead` make its next engine once the worker of `exec` gets to it (if it still exists).
void make_ahead_soon(const asio::any_io_executor& exec,
                     const std::shared_ptr<tls::hello_ahead>& ahead) {
    asio::post(exec, [next = std::weak_ptr(ahead)] {
        if (auto p = next.lock()) {
            p->make();
        }
    });
}

// tls and wss. `ahead` (may be null): this worker's engine made ahead, whose ClientHello goes
// out as soon as the connect completes; the next one is made while this one waits for the
// server's reply.
asio::awaitable<void> client_tls(tcp::socket socket, std::uint64_t id, const client_config& cfg,
                                 std::shared_ptr<tls::hello_ahead> ahead = nullptr) {
    log_accepted(id, socket);
    tcp_stream app(std::move(socket));

    // With 0rtt, TLS 1.3 early data carries the first bytes that can go: for wss the websocket
    // upgrade request (with `ed`, holding the app's first bytes), for tls the app's first bytes.
    const bool zero_rtt = cfg.tls && cfg.tls->options().early_data;
    const bool ws_early = cfg.opts.ws && cfg.opts.ws->early_data != 0;
    ws_client_request request;
    std::optional<tcp::socket> up_socket;
    buffer_lease first;
    std::size_t first_len = 0;
    if ((zero_rtt && !cfg.opts.ws) || ws_early) {
        // Read the app's first bytes while connecting: they become TLS 1.3 early data (the
        // server takes at most 16 KiB of it) or go into the upgrade request.
        up_socket = co_await dial_reading_first(app, id, cfg, first, first_len);
    } else {
        // The ClientHello is the first write: with tfo it rides in the SYN.
        up_socket = co_await dial(cfg.remote, cfg.opts.common.connect_timeout, id,
                                  {.fast_open = cfg.opts.common.tfo});
    }
    if (!up_socket) {
        co_return;
    }
    if (cfg.opts.ws) {
        // The upgrade request is the first flight: it goes with the TLS handshake (as early
        // data with 0rtt, else right behind it), and the app's first bytes are in it.
        if (!make_ws_request(id, *cfg.opts.ws, request, first.span().first(first_len))) {
            co_return;
        }
        first.release();
    }
    const auto deadline = clock::now() + cfg.opts.common.handshake_timeout;
    bool made_ahead = false;
    tls_stream<tcp_stream> up(tcp_stream(std::move(*up_socket)),
                              ahead ? ahead->take(&made_ahead) : cfg.tls->make_engine());
    if (ahead) {
        // Runs once this frame waits for the server's reply: the ClientHello is out by then
        // (the write is tried at once; only its completion is queued behind this).
        make_ahead_soon(up.get_executor(), ahead);
        ahead.reset(); // the connection's frame does not keep it
    }
    const auto early = cfg.opts.ws ? request.bytes()
                                   : std::span<const std::uint8_t>(first.span().first(first_len));
    // tls: what the app has sent by the time the handshake completes goes in the same write as
    // the client's Finished (wss: the upgrade request does). Read after the early data, in the
    // rest of its buffer when there is one.
    buffer_lease behind;
    io_result got_behind{asio::error::would_block, 0};
    auto app_bytes = [&]() -> std::span<const std::uint8_t> {
        if (cfg.opts.ws) {
            return {};
        }
        std::span<std::uint8_t> room = first.span().subspan(first_len);
        if (room.empty()) {
            behind = borrow_buffer(relay_min_buffer_size);
            room = behind.span();
        }
        got_behind = app.try_read_some(room);
        return room.first(got_behind.n);
    };
    if (auto hec = co_await step(up, up.handshake_client(early, app_bytes), deadline)) {
        metrics::add(metrics::tls_failed);
        log::warn("#{} TLS handshake with {} failed: {}", id, cfg.remote.to_string(),
                  hec.message());
        up.close();
        co_return;
    }
    first.release();
    behind.release();
    log_tls_session(id, up.engine(), zero_rtt ? early.size() : 0, made_ahead, got_behind.n);
    if (app_failed(id, got_behind.ec)) {
        up.close();
        co_return;
    }
    co_await client_finish(app, up, id, cfg, deadline, cfg.opts.ws ? &request : nullptr,
                           first_len + got_behind.n);
}

} // namespace

class client_pools {
public:
    using tls_conn = tls_stream<tcp_stream>;

    client_pools(const client_config& cfg, runtime& rt) {
        const std::size_t per_worker = (cfg.opts.pool.size + rt.size() - 1) / rt.size();
        const std::size_t max_per_worker =
            std::max(per_worker, (cfg.opts.pool.max_size + rt.size() - 1) / rt.size());
        const auto policy = cfg.opts.ws ? early_bytes::fatal : early_bytes::keep;
        for (std::size_t i = 0; i < rt.size(); ++i) {
            auto exec = rt.context(i).get_executor();
            contexts_.push_back(&rt.context(i));
            if (cfg.opts.mux == 0 && cfg.opts.pool.size == 0) {
                // tls and wss without pool or mux: a ClientHello made ahead (not with 0rtt,
                // whose ClientHello waits for the app's bytes).
                if (cfg.tls && !cfg.tls->options().early_data) {
                    hellos_.push_back(std::make_shared<tls::hello_ahead>(*cfg.tls));
                    make_ahead_soon(exec, hellos_.back());
                }
            } else if (cfg.opts.mux != 0 && !cfg.opts.ws) {
                mux_tls_.push_back(std::make_shared<mux_links<tls_conn>>(
                    exec, cfg.opts.mux, [&cfg](std::uint64_t id, bool& declined) {
                        return open_mux_tls(cfg, id, declined);
                    }));
            } else if (cfg.opts.mux != 0) {
                if (cfg.tls) {
                    mux_wss_.push_back(std::make_shared<mux_links<ws_stream<tls_conn>>>(
                        exec, cfg.opts.mux,
                        [&cfg](std::uint64_t id, bool&) { return open_ws<tls_conn>(cfg, id); }));
                } else {
                    mux_ws_.push_back(std::make_shared<mux_links<ws_stream<tcp_stream>>>(
                        exec, cfg.opts.mux,
                        [&cfg](std::uint64_t id, bool&) { return open_ws<tcp_stream>(cfg, id); }));
                }
            } else if (cfg.tls) {
                tls_.push_back(std::make_shared<warm_pool<tls_conn>>(
                    exec, per_worker, max_per_worker, cfg.opts.pool.max_idle, policy,
                    [&cfg] { return open_tls(cfg); }));
                tls_.back()->start();
            } else {
                tcp_.push_back(std::make_shared<warm_pool<tcp_stream>>(
                    exec, per_worker, max_per_worker, cfg.opts.pool.max_idle, policy,
                    [&cfg] { return open_tcp(cfg); }));
                tcp_.back()->start();
            }
        }
    }

    void stop() noexcept {
        for (auto& m : mux_ws_) {
            m->stop();
        }
        for (auto& m : mux_wss_) {
            m->stop();
        }
        for (auto& m : mux_tls_) {
            m->stop();
        }
        for (auto& p : tcp_) {
            p->stop();
        }
        for (auto& p : tls_) {
            p->stop();
        }
    }

    /// The pool of the worker running `exec` (nullptr for another kind).
    warm_pool<tcp_stream>* tcp_here(const asio::any_io_executor& exec) noexcept {
        return here(tcp_, exec);
    }
    warm_pool<tls_conn>* tls_here(const asio::any_io_executor& exec) noexcept {
        return here(tls_, exec);
    }
    mux_links<ws_stream<tcp_stream>>* mux_ws_here(const asio::any_io_executor& exec) noexcept {
        return here(mux_ws_, exec);
    }
    mux_links<ws_stream<tls_conn>>* mux_wss_here(const asio::any_io_executor& exec) noexcept {
        return here(mux_wss_, exec);
    }
    mux_links<tls_conn>* mux_tls_here(const asio::any_io_executor& exec) noexcept {
        return here(mux_tls_, exec);
    }
    std::shared_ptr<tls::hello_ahead> hello_here(const asio::any_io_executor& exec) noexcept {
        auto* slot = slot_here(hellos_, exec);
        return slot != nullptr ? *slot : nullptr;
    }

    /// Another worker's pool with the most connections ready and unclaimed (some), for an app
    /// connection whose own worker's pool is empty; its worker's io_context; a claim on one of
    /// its connections, to release once the app connection has taken one there.
    template <class Conn>
    struct elsewhere {
        warm_pool<Conn>* pool = nullptr;
        asio::io_context* context = nullptr;
        ready_claim claim;
        std::size_t unclaimed = 0; ///< there, before this claim
    };
    template <class Conn>
    elsewhere<Conn> ready_elsewhere(const asio::any_io_executor& exec) noexcept {
        if constexpr (std::is_same_v<Conn, tls_conn>) {
            return ready_elsewhere(tls_, exec);
        } else {
            return ready_elsewhere(tcp_, exec);
        }
    }

private:
    template <class Conn>
    elsewhere<Conn> ready_elsewhere(std::vector<std::shared_ptr<warm_pool<Conn>>>& pools,
                                    const asio::any_io_executor& exec) noexcept {
        auto& ctx = asio::query(exec, asio::execution::context);
        // A claim can lose to another worker's between the look and the claim: look again
        // (with three or more workers, another pool may still have some).
        for (std::size_t tries = 0; tries < pools.size(); ++tries) {
            std::size_t best = pools.size();
            std::size_t most = 0;
            for (std::size_t i = 0; i < pools.size(); ++i) {
                const std::size_t n = pools[i]->unclaimed();
                if (contexts_[i] != &ctx && n > most) {
                    most = n;
                    best = i;
                }
            }
            if (best == pools.size()) {
                return {};
            }
            if (auto claim = pools[best]->claim()) {
                return {pools[best].get(), contexts_[best], std::move(claim), most};
            }
        }
        return {};
    }

    // The entry of `per_worker` that belongs to the worker running `exec` (nullptr if none).
    template <class T>
    std::shared_ptr<T>* slot_here(std::vector<std::shared_ptr<T>>& per_worker,
                                  const asio::any_io_executor& exec) {
        auto& ctx = asio::query(exec, asio::execution::context);
        for (std::size_t i = 0; i < per_worker.size(); ++i) {
            if (contexts_[i] == &ctx) {
                return &per_worker[i];
            }
        }
        return nullptr;
    }

    template <class Pool>
    Pool* here(std::vector<std::shared_ptr<Pool>>& pools, const asio::any_io_executor& exec) {
        auto* slot = slot_here(pools, exec);
        return slot != nullptr ? slot->get() : nullptr;
    }

    static asio::awaitable<std::optional<tcp_stream>> open_tcp(const client_config& cfg) {
        auto [ec, socket] = co_await connect_remote(cfg.remote, cfg.opts.common.connect_timeout);
        if (ec) {
            metrics::add(metrics::connect_failed);
            log::debug("pool: connect to {} failed: {}", cfg.remote.to_string(), ec.message());
            co_return std::nullopt;
        }
        co_return tcp_stream(std::move(socket));
    }

    // `mux`: a mux link's handshake (client_context::make_engine()).
    static asio::awaitable<std::optional<tls_conn>> open_tls(const client_config& cfg,
                                                             bool mux = false) {
        auto [ec, socket] = co_await connect_remote(cfg.remote, cfg.opts.common.connect_timeout);
        if (ec) {
            metrics::add(metrics::connect_failed);
            log::debug("pool: connect to {} failed: {}", cfg.remote.to_string(), ec.message());
            co_return std::nullopt;
        }
        tls_conn up(tcp_stream(std::move(socket)), cfg.tls->make_engine(mux));
        const auto deadline = clock::now() + cfg.opts.common.handshake_timeout;
        if (auto hec = co_await step(up, up.handshake_client({}), deadline)) {
            metrics::add(metrics::tls_failed);
            log::warn("pool: TLS handshake with {} failed: {}", cfg.remote.to_string(),
                      hec.message());
            up.close();
            co_return std::nullopt;
        }
        co_return std::optional<tls_conn>(std::move(up));
    }

    template <class Lower>
    static asio::awaitable<std::optional<Lower>> open_lower(const client_config& cfg) {
        if constexpr (std::is_same_v<Lower, tls_conn>) {
            co_return co_await open_tls(cfg);
        } else {
            co_return co_await open_tcp(cfg);
        }
    }

    // A websocket for mux=, with no app bytes in its upgrade; nullopt when it failed (logged).
    template <class Lower>
    static asio::awaitable<std::optional<ws_stream<Lower>>> open_ws(const client_config& cfg,
                                                                    std::uint64_t id) {
        auto lower = co_await open_lower<Lower>(cfg);
        if (!lower) {
            log::warn("#{} Mux.Cool: no connection to {}", id, cfg.remote.to_string());
            co_return std::nullopt;
        }
        const auto deadline = clock::now() + cfg.opts.common.handshake_timeout;
        ws_stream<Lower> ws(std::move(*lower), codec::role::client, cfg.opts.ws->mask);
        ws_client_request request;
        if (!make_ws_request(id, *cfg.opts.ws, request, {}, codec::carriage::mux) ||
            !co_await client_ws_handshake(ws, id, cfg, deadline, request, false)) {
            co_return std::nullopt;
        }
        co_return std::optional<ws_stream<Lower>>(std::move(ws));
    }

    // tls;mux=: a TLS connection that carries Mux.Cool itself, once the server has selected
    // codec::mux::tls_alpn; nullopt when it failed, or (`declined`) the server did not (both
    // logged).
    static asio::awaitable<std::optional<tls_conn>> open_mux_tls(const client_config& cfg,
                                                                 std::uint64_t id, bool& declined) {
        auto tls = co_await open_tls(cfg, true);
        if (!tls) {
            log::warn("#{} Mux.Cool: no connection to {}", id, cfg.remote.to_string());
            co_return std::nullopt;
        }
        if (tls->engine().alpn() != codec::mux::tls_alpn) {
            log::warn("#{} Mux.Cool: {} did not take mux over tls (ALPN {}: it is not a kaminaris "
                      "that has it); app connections go one TLS connection each for {} s",
                      id, cfg.remote.to_string(), codec::mux::tls_alpn, mux_declined_wait.count());
            declined = true;
            tls->close();
            co_return std::nullopt;
        }
        co_return tls;
    }

    std::vector<asio::io_context*> contexts_;
    std::vector<std::shared_ptr<mux_links<ws_stream<tcp_stream>>>> mux_ws_;
    std::vector<std::shared_ptr<mux_links<ws_stream<tls_conn>>>> mux_wss_;
    std::vector<std::shared_ptr<mux_links<tls_conn>>> mux_tls_;
    std::vector<std::shared_ptr<warm_pool<tcp_stream>>> tcp_;
    std::vector<std::shared_ptr<warm_pool<tls_conn>>> tls_;
    std::vector<std::shared_ptr<tls::hello_ahead>> hellos_;
};

std::shared_ptr<client_pools> start_client_pools(const client_config& cfg, runtime& rt) {
    if (cfg.opts.pool.size == 0 && cfg.opts.mux == 0 &&
        (!cfg.tls || cfg.tls->options().early_data)) {
        return nullptr;
    }
    return std::make_shared<client_pools>(cfg, rt);
}

void stop_client_pools(client_pools& pools) noexcept {
    pools.stop();
}

namespace {

// Without a warm connection ready, the connection goes as it would without a pool.
asio::awaitable<void> client_unpooled(tcp::socket socket, std::uint64_t id,
                                      const client_config& cfg) {
    if (cfg.tls) {
        return client_tls(std::move(socket), id, cfg);
    }
    if (cfg.opts.ws) {
        return client_ws(std::move(socket), id, cfg);
    }
    if (cfg.opts.common.tfo) {
        return client_tcp_fast_open(std::move(socket), id, cfg);
    }
    return tcp_tunnel(std::move(socket), id, cfg);
}

// mux=: the app's connection as a session on a shared websocket (or TLS connection). While the
// server declines Mux.Cool (tls: an older or another server), as without mux.
template <class Link>
asio::awaitable<void> client_mux(tcp::socket socket, std::uint64_t id, const client_config& cfg,
                                 mux_links<Link>& links) {
    if (links.declined()) {
        co_await client_unpooled(std::move(socket), id, cfg);
        co_return;
    }
    log_accepted(id, socket);
    if (auto r = co_await links.carry(socket, id)) {
        log_end(id, *r);
    } else if (links.declined() && socket.is_open()) {
        co_await client_unpooled(std::move(socket), id, cfg);
    }
}

// Hands the app what the server sent while the connection waited in the pool.
asio::awaitable<bool> deliver_received(tcp_stream& app, std::vector<std::uint8_t>& received,
                                       std::uint64_t id) {
    if (received.empty()) {
        co_return true;
    }
    auto w = co_await write_all(app, std::span<std::uint8_t>(received));
    if (w.ec) {
        log::debug("#{} app failed: {}", id, w.ec.message());
        co_return false;
    }
    co_return true;
}

template <class Conn>
asio::awaitable<void> client_warm(tcp::socket socket, std::uint64_t id, const client_config& cfg,
                                  warm_pool<Conn>& pool, client_pools* pools,
                                  ready_claim claim = {});

// For an app connection whose worker's pool is empty: another worker's pool has connections
// ready (a burst came to this worker more than the last one did), so the connection runs
// there, where the app's bytes go at once rather than after a connect and handshakes. The take
// there counts in that pool's demand too, so with pool_max both keep more ready: headroom for
// how the next burst is split. One of that pool's ready connections is claimed for it (other
// workers' connections see one fewer there) until it has taken one. Whether it went (else it
// is served here; `socket` is intact).
template <class Conn>
asio::awaitable<bool> to_another_worker(tcp::socket& socket, std::uint64_t id,
                                        const client_config& cfg, client_pools& pools) {
    auto to = pools.ready_elsewhere<Conn>(socket.get_executor());
    if (to.pool == nullptr) {
        log::debug("#{} no worker has a connection ready; dialing", id);
        co_return false;
    }
    log::debug("#{} no warm connection on this worker; to another worker's ({} ready there)", id,
               to.unclaimed);
    metrics::add(metrics::pool_handed_over);
    // The closure is a std::function, so copyable: the claim is shared.
    auto claimed = std::make_shared<ready_claim>(std::move(to.claim));
    handed_connection run = [id, &cfg, &pool = *to.pool, claimed](tcp::socket s) {
        return client_warm(std::move(s), id, cfg, pool, nullptr, std::move(*claimed));
    };
    const bool moved = co_await hand_over(socket, *to.context, std::move(run), id);
    co_return moved;
}

// On a warm connection: tcp and ws on a TCP one, tls and wss on one whose TLS handshake is
// done. Without one ready, on another worker that has one (`pools`: not yet handed over), else
// as without a pool. `claim`: the one this app connection holds here, when handed over.
template <class Conn>
asio::awaitable<void> client_warm(tcp::socket socket, std::uint64_t id, const client_config& cfg,
                                  warm_pool<Conn>& pool, client_pools* pools, ready_claim claim) {
    auto warm = co_await pool.take(std::move(claim));
    if (!warm) {
        if (pools != nullptr) {
            const bool moved = co_await to_another_worker<Conn>(socket, id, cfg, *pools);
            if (moved || !socket.is_open()) {
                co_return;
            }
        }
        metrics::add(metrics::pool_dialed);
        co_await client_unpooled(std::move(socket), id, cfg);
        co_return;
    }
    metrics::add(metrics::pool_warm);
    log_accepted(id, socket);
    log::debug("#{} on a warm connection", id);
    tcp_stream app(std::move(socket));
    const auto deadline = clock::now() + cfg.opts.common.handshake_timeout;
    if constexpr (std::is_same_v<Conn, tcp_stream>) {
        if (cfg.opts.ws) {
            ws_stream<tcp_stream> ws(std::move(warm->conn), codec::role::client, cfg.opts.ws->mask);
            std::uint64_t early_up = 0;
            if (co_await client_ws_upgrade(app, ws, id, cfg, deadline, early_up)) {
                auto r = co_await ws_relay(app, ws, ws, cfg.opts.common, id);
                r.a_to_b.bytes += early_up;
                log_end(id, r);
            }
            co_return;
        }
    }
    if (!co_await deliver_received(app, warm->received, id)) {
        co_return;
    }
    if constexpr (std::is_same_v<Conn, tcp_stream>) {
        auto r = co_await async_splice_relay(app.socket(), warm->conn.socket(),
                                             cfg.opts.common.idle_timeout, asio::use_awaitable);
        r.b_to_a.bytes += warm->received.size();
        log_end(id, r);
    } else {
        // What the server sent while the connection waited (a banner) was delivered above.
        co_await client_finish(app, warm->conn, id, cfg, deadline, nullptr, 0,
                               warm->received.size());
    }
}

} // namespace

// Each transport has a coroutine of its own, chosen here outside any coroutine: a frame holds
// the locals of all its branches, and an idle connection keeps its frame for its whole life.
asio::awaitable<void> client_connection(tcp::socket socket, std::uint64_t id,
                                        const client_config& cfg, client_pools* pools) {
    if (pools != nullptr) {
        const auto exec = socket.get_executor();
        if (auto* links = pools->mux_ws_here(exec)) {
            return client_mux(std::move(socket), id, cfg, *links);
        }
        if (auto* links = pools->mux_wss_here(exec)) {
            return client_mux(std::move(socket), id, cfg, *links);
        }
        if (auto* links = pools->mux_tls_here(exec)) {
            return client_mux(std::move(socket), id, cfg, *links);
        }
        if (auto* pool = pools->tls_here(exec)) {
            return client_warm(std::move(socket), id, cfg, *pool, pools);
        }
        if (auto* pool = pools->tcp_here(exec)) {
            return client_warm(std::move(socket), id, cfg, *pool, pools);
        }
        if (auto ahead = pools->hello_here(exec)) {
            return client_tls(std::move(socket), id, cfg, std::move(ahead));
        }
    }
    return client_unpooled(std::move(socket), id, cfg);
}

namespace {

// `ahead`: the target's connect, if it was started during the TLS handshake (server_tls()).
template <byte_stream Lower>
asio::awaitable<void> server_relay(Lower& down, std::uint64_t id, const server_config& cfg,
                                   dial_ahead* ahead = nullptr) {
    // (No co_await in a ?: here: GCC 12 destroyed the socket it gave twice, closing its
    // descriptor while in use.)
    std::optional<tcp::socket> up_socket;
    if (ahead != nullptr && ahead->started()) {
        auto r = co_await ahead->take();
        up_socket = dialed(std::move(r), cfg.remote, id);
    } else {
        up_socket = co_await dial(cfg.remote, cfg.opts.common.connect_timeout, id);
    }
    if (!up_socket) {
        down.close();
        co_return;
    }
    tcp_stream up(std::move(*up_socket));
    if constexpr (is_ws_stream<Lower>) {
        const auto mux = co_await serve_if_mux(down, up, id, cfg);
        if (mux.handled) {
            co_return;
        }
        auto r = co_await ws_relay(down, up, down, cfg.opts.common, id);
        r.a_to_b.bytes += mux.forwarded;
        log_end(id, r);
    } else {
        log_end(id, co_await relay(down, up, cfg.opts.common.idle_timeout));
    }
}

// `fallback=`: a connection that is not a valid upgrade goes to the fallback web server with
// the bytes it sent, and everything after is relayed as it comes, both ways, for as long as
// either side keeps it: a prober sees that server's own answers, timeouts, limits and close.
template <byte_stream Lower>
asio::awaitable<void> hand_to_fallback(Lower& down, std::vector<std::uint8_t>& sent,
                                       std::uint64_t id, const server_config& cfg,
                                       const error_code& why) {
    const endpoint& site = *cfg.opts.fallback;
    log::info("#{} not a websocket upgrade from {} ({}): to the fallback {}", id, peer_of(down),
              why.message(), site.to_string());
    auto up_socket = co_await dial(site, cfg.opts.common.connect_timeout, id);
    if (!up_socket) {
        down.close();
        co_return;
    }
    tcp_stream up(std::move(*up_socket));
    if (auto w = co_await write_all(up, std::span<std::uint8_t>(sent)); w.ec) {
        log::debug("#{} fallback {} failed: {}", id, site.to_string(), w.ec.message());
        down.close();
        up.close();
        co_return;
    }
    const std::size_t first = sent.size();
    std::vector<std::uint8_t>().swap(sent);
    auto r = co_await relay(down, up, cfg.opts.common.idle_timeout);
    r.a_to_b.bytes += first;
    log_end(id, r);
}

// The websocket server handshake on `ws` within the deadline; false (logged, `ws` closed) when
// it failed. `*what` is set to what the request says the websocket carries.
template <byte_stream Lower>
asio::awaitable<bool> server_ws_handshake(ws_stream<Lower>& ws, std::uint64_t id,
                                          const server_config& cfg, clock::time_point deadline,
                                          codec::carriage* what) {
    // A client's warm connection (pool=) says nothing until an app arrives: its request's first
    // byte may take up to server_request_wait, and the handshake deadline starts from there.
    if (auto ec = co_await wait_for_request(ws.next_layer())) {
        if (ec == asio::error::timed_out) {
            log::info("#{} no websocket request from {} within {} s; closing", id, peer_of(ws),
                      server_request_wait.count());
        } else {
            log::debug("#{} closed before its websocket request: {}", id, ec.message());
        }
        ws.close();
        co_return false;
    }
    deadline = std::max(deadline, clock::now() + cfg.opts.common.handshake_timeout);
    std::size_t early = 0;
    std::vector<std::uint8_t> handed;
    auto* const to_fallback = cfg.opts.fallback ? &handed : nullptr;
    if (auto ec = co_await step(
            ws, ws_server_handshake(ws, *cfg.opts.ws, &early, to_fallback, what), deadline)) {
        if (to_fallback != nullptr && ec == ws_condition::handshake_failed) {
            co_await hand_to_fallback(ws.next_layer(), handed, id, cfg, ec);
            co_return false;
        }
        // Probers and scanners end up here: informative, not alarming. A client that just
        // closed (a warm connection expiring mid-request) is not worth a line at info.
        const auto lv = ec == asio::error::eof ? log::level::debug : log::level::info;
        metrics::add(metrics::websocket_failed);
        log::print(lv, "#{} websocket handshake from {} failed: {}", id, peer_of(ws), ec.message());
        ws.close();
        co_return false;
    }
    if (early != 0) {
        log::debug("#{} websocket early data: {} bytes", id, early);
    }
    co_return true;
}

template <byte_stream Lower>
asio::awaitable<void> server_finish(Lower& lower, std::uint64_t id, const server_config& cfg,
                                    clock::time_point deadline, dial_ahead* ahead = nullptr) {
    if (!cfg.opts.ws) {
        if (cfg.opts.common.udp) { // the first bytes tell a UDP association (udp_server.hpp)
            co_await serve_tls_udp_or_tcp(lower, id, cfg);
            co_return;
        }
        co_await server_relay(lower, id, cfg, ahead);
        co_return;
    }
    ws_stream<Lower> ws(std::move(lower), codec::role::server);
    auto what = codec::carriage::stream;
    if (co_await server_ws_handshake(ws, id, cfg, deadline, &what)) {
        if (what == codec::carriage::udp) {
            co_await serve_udp_association(ws, id, cfg);
        } else if (what == codec::carriage::mux) {
            co_await serve_mux(ws, id, cfg);
        } else {
            co_await server_relay(ws, id, cfg);
        }
    }
}

// ws: the websocket layer over the client's TCP socket. All in this one frame (not
// server_finish() and server_relay()), which an idle connection holds for its whole life.
asio::awaitable<void> server_ws(tcp::socket socket, std::uint64_t id, const server_config& cfg) {
    log_accepted(id, socket);
    const auto deadline = clock::now() + cfg.opts.common.handshake_timeout;
    ws_stream<tcp_stream> ws(tcp_stream(std::move(socket)), codec::role::server);
    auto what = codec::carriage::stream;
    if (!co_await server_ws_handshake(ws, id, cfg, deadline, &what)) {
        co_return;
    }
    if (what == codec::carriage::udp) {
        co_await serve_udp_association(ws, id, cfg);
        co_return;
    }
    if (what == codec::carriage::mux) {
        co_await serve_mux(ws, id, cfg);
        co_return;
    }
    auto up = co_await dial(cfg.remote, cfg.opts.common.connect_timeout, id);
    if (!up) {
        ws.close();
        co_return;
    }
    tcp_stream target(std::move(*up));
    const auto mux = co_await serve_if_mux(ws, target, id, cfg);
    if (mux.handled) {
        co_return;
    }
    auto r = co_await ws_relay(ws, target, ws, cfg.opts.common, id);
    r.a_to_b.bytes += mux.forwarded;
    log_end(id, r);
}

// Whether `remote` is an address literal on this host (a name is not resolved here).
bool literal_on_this_host(const endpoint& remote) {
    error_code ec;
    const auto a = asio::ip::make_address(remote.host, ec);
    return !ec && on_this_host(a);
}

// Whether kaminaris dials the target while the client finishes its TLS handshake: in tls mode
// (a websocket's request must be read first: it may be no upgrade, or carry UDP or Mux.Cool),
// for a plain stream (not a UDP association, told by its first bytes, nor kaminaric's
// tls;mux), when no client certificate is asked for (the target hears only from clients that
// showed one), and when the target is not an address on this host: such a connect completes
// within connect() itself (about 30 us here), so there is no round trip to hide, and dialed
// early it wakes the target once for the connection and again for the bytes (on loopback
// here: 4 % more CPU per tls connection and 35 us more latency one at a time).
bool dials_during_handshake(const server_config& cfg, const tls::engine& engine) {
    return !cfg.opts.ws && !cfg.opts.common.udp && cfg.opts.tls->client_ca.empty() &&
           engine.alpn() != codec::mux::tls_alpn && !literal_on_this_host(cfg.remote);
}

// tls and wss.
asio::awaitable<void> server_tls(tcp::socket socket, std::uint64_t id, const server_config& cfg) {
    log_accepted(id, socket);
    const auto deadline = clock::now() + cfg.opts.common.handshake_timeout;
    tls_stream<tcp_stream> tls(tcp_stream(std::move(socket)), cfg.tls->make_engine());
    // Once the server's flight is out, the target's connect runs during the round trip to the
    // client's Finished, instead of after it.
    dial_ahead target;
    const auto on_flight = [&] {
        if (dials_during_handshake(cfg, tls.engine())) {
            target.start(tls.get_executor(), cfg.remote, cfg.opts.common.connect_timeout);
        }
    };
    if (auto ec = co_await step(tls, tls.handshake_server(on_flight), deadline)) {
        metrics::add(metrics::tls_failed);
        log::info("#{} TLS handshake from {} failed: {}", id, peer_of(tls), ec.message());
        tls.close();
        co_return;
    }
    log_tls_session(id, tls.engine(), 0, false, 0, target.started());
    if (!cfg.opts.ws && tls.engine().alpn() == codec::mux::tls_alpn) {
        co_await serve_mux(tls, id, cfg); // kaminaric's tls;mux=<n>
        co_return;
    }
    co_await server_finish(tls, id, cfg, deadline, &target);
}

} // namespace

namespace {

// One coroutine per transport, as client_connection().
asio::awaitable<void> server_transport(tcp::socket socket, std::uint64_t id,
                                       const server_config& cfg) {
    if (cfg.tls) {
        return server_tls(std::move(socket), id, cfg);
    }
    if (cfg.opts.ws) {
        return server_ws(std::move(socket), id, cfg);
    }
    return tcp_tunnel(std::move(socket), id, cfg);
}

// `proxy_protocol`: the load balancer's PROXY header first, then the connection as usual. The
// client's address it names is logged; without a valid header the connection is refused.
asio::awaitable<void> server_behind_proxy(tcp::socket socket, std::uint64_t id,
                                          const server_config& cfg) {
    auto [ec, h] = co_await read_proxy_header(socket, cfg.opts.common.handshake_timeout);
    if (ec || h.st != codec::proxy_header::status::ok) {
        log::info("#{} no valid PROXY header from {}: {}; closing", id, peer_of(socket),
                  ec ? ec.message() : std::string(h.reason));
        co_return;
    }
    if (log::enabled(log::level::debug)) {
        log::debug("#{} client {} (PROXY v{} from {})", id,
                   h.source.empty() ? std::string("(not given)") : h.source, h.version,
                   peer_of(socket));
    }
    co_await server_transport(std::move(socket), id, cfg);
}

} // namespace

asio::awaitable<void> server_connection(tcp::socket socket, std::uint64_t id,
                                        const server_config& cfg) {
    if (cfg.opts.proxy_protocol) {
        return server_behind_proxy(std::move(socket), id, cfg);
    }
    return server_transport(std::move(socket), id, cfg);
}

} // namespace kaminari::net

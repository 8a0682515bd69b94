#include "kaminari/net/udp_client.hpp"

#include <kaminari/error.hpp>
#include <kaminari/log.hpp>
#include <kaminari/net/dial.hpp>
#include <kaminari/net/timeout.hpp>
#include <kaminari/net/tls_stream.hpp>
#include <kaminari/net/udp.hpp>
#include <kaminari/net/ws_handshake.hpp>
#include <kaminari/net/ws_stream.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace kaminari::net {

namespace {

using udp = asio::ip::udp;
using clock = std::chrono::steady_clock;

// One client source address and its tunnel connection.
struct association {
    association(const asio::any_io_executor& exec, udp::endpoint source, std::uint64_t n)
        : from(source)
        , id(n)
        , wake(exec)
        , idle(exec)
        , last(clock::now()) {}

    udp::endpoint from;
    std::uint64_t id;
    std::deque<std::vector<std::uint8_t>> queue; ///< datagrams not yet written to the tunnel
    std::size_t queued_bytes = 0;
    asio::steady_timer wake; ///< the writer waits on it for the queue; cancelled on a push
    asio::steady_timer idle; ///< the udp_timeout check
    clock::time_point last;
    bool stopped = false;
    std::function<void()> close_stream; ///< set while the connection is open
    std::uint64_t up = 0;
    std::uint64_t down = 0;
    std::uint64_t dropped = 0;

    void stop() noexcept {
        if (stopped) {
            return;
        }
        stopped = true;
        if (close_stream) {
            close_stream();
        }
        wake.cancel();
        idle.cancel();
    }
};

} // namespace

// One bound UDP socket and the associations of the addresses that sent to it.
struct udp_listener {
    udp_listener(asio::io_context& ctx, const client_config& c)
        : sock(ctx)
        , cfg(c) {}
    udp::socket sock;
    const client_config& cfg;
    std::map<udp::endpoint, std::shared_ptr<association>> assocs;
    std::uint64_t refused = 0;
};

class udp_client {
public:
    std::vector<std::unique_ptr<udp_listener>> listeners;
};

namespace {

std::atomic<std::uint64_t> next_association_id{1};

void drop(association& a, std::size_t size, const char* why) {
    ++a.dropped;
    log::debug("#u{} udp: datagram of {} bytes dropped ({}); {} dropped so far", a.id, size, why,
               a.dropped);
}

// App -> tunnel: the queue, in order.
template <byte_stream S>
asio::awaitable<void> write_queue(S& s, association& a) {
    while (!a.stopped) {
        if (a.queue.empty()) {
            a.wake.expires_at(clock::time_point::max());
            co_await a.wake.async_wait(use_tuple);
            continue;
        }
        std::vector<std::uint8_t> d = std::move(a.queue.front());
        a.queue.pop_front();
        a.queued_bytes -= d.size();
        std::array<std::uint8_t, codec::udp_header_size> head{};
        codec::encode_udp_header(d.size(), head);
        if (auto w = co_await s.write(head, std::span(d)); w.ec) {
            a.stop();
        }
    }
}

// Tunnel -> app: each datagram back to the source address at once; one the socket cannot take
// now is dropped.
template <byte_stream S>
asio::awaitable<void> read_replies(S& s, association& a, udp::socket& sock) {
    udp_frame_reader reader;
    while (!a.stopped) {
        auto r = co_await reader.next(s);
        if (r.end == udp_read_end::too_large || r.end == udp_read_end::truncated) {
            log::info("#u{} udp: {} from the server; closing", a.id,
                      r.end == udp_read_end::too_large ? "a datagram too large"
                                                       : "a truncated datagram");
        }
        if (r.end != udp_read_end::none) {
            a.stop();
            break;
        }
        a.last = clock::now();
        ++a.down;
        error_code ec;
        sock.send_to(asio::buffer(r.datagram.data(), r.datagram.size()), a.from, 0, ec);
        if (ec) {
            drop(a, r.datagram.size(), ec.message().c_str());
        }
    }
}

asio::awaitable<void> watch_idle(association& a, std::chrono::milliseconds limit) {
    const auto tick = std::clamp<clock::duration>(limit / 4, std::chrono::milliseconds(50),
                                                  std::chrono::seconds(5));
    while (!a.stopped) {
        a.idle.expires_after(tick);
        co_await a.idle.async_wait(use_tuple);
        if (!a.stopped && clock::now() - a.last >= limit) {
            log::debug("#u{} udp: idle for {} s; closing", a.id, limit.count() / 1000.0);
            a.stop();
        }
    }
}

template <byte_stream S>
asio::awaitable<void> pump(S& s, association& a, udp::socket& sock, const client_config& cfg) {
    using namespace asio::experimental::awaitable_operators;
    if (a.stopped) {
        s.close();
        co_return;
    }
    a.close_stream = [&s]() noexcept { s.close(); };
    co_await (write_queue(s, a) && read_replies(s, a, sock) &&
              watch_idle(a, cfg.opts.common.udp_timeout));
    a.close_stream = nullptr;
}

// The websocket upgrade that opens the association, within the handshake deadline.
template <byte_stream Lower>
asio::awaitable<bool> ws_open(ws_stream<Lower>& ws, association& a, const client_config& cfg) {
    ws_client_request req;
    if (auto ec = make_client_request(*cfg.opts.ws, req, {}, codec::carriage::udp)) {
        log::warn("#u{} websocket request: {}", a.id, ec.message());
        co_return false;
    }
    const deadline limit(ws.get_executor(), cfg.opts.common.handshake_timeout,
                         [&ws]() noexcept { ws.close(); });
    if (auto ec = co_await ws_client_handshake(ws, req)) {
        log::warn("#u{} websocket handshake with {} failed: {}", a.id, cfg.remote.to_string(),
                  limit.expired() ? std::string("timed out") : ec.message());
        ws.close();
        co_return false;
    }
    co_return true;
}

// Connects, runs the handshakes of the configured transport, then carries datagrams until the
// association ends.
asio::awaitable<void> open_and_pump(association& a, udp::socket& sock, const client_config& cfg) {
    auto [ec, tcp] = co_await connect_remote(cfg.remote, cfg.opts.common.connect_timeout);
    if (ec) {
        log::warn("#u{} udp: connect to {} failed: {}", a.id, cfg.remote.to_string(), ec.message());
        co_return;
    }
    const auto mask = cfg.opts.ws ? cfg.opts.ws->mask : codec::mask_mode::skip;
    if (!cfg.tls) {
        ws_stream<tcp_stream> ws(tcp_stream(std::move(tcp)), codec::role::client, mask);
        if (co_await ws_open(ws, a, cfg)) {
            co_await pump(ws, a, sock, cfg);
        }
        co_return;
    }
    tls_stream<tcp_stream> tls(tcp_stream(std::move(tcp)), cfg.tls->make_engine());
    {
        // tls: the marker is the first data, sent with the end of the handshake (or as early
        // data with 0rtt) and ahead of any frame.
        const auto first = cfg.opts.ws ? std::span<const std::uint8_t>()
                                       : std::span<const std::uint8_t>(codec::udp_stream_marker);
        const deadline limit(tls.get_executor(), cfg.opts.common.handshake_timeout,
                             [&tls]() noexcept { tls.close(); });
        if (auto hec = co_await tls.handshake_client(first)) {
            log::warn("#u{} TLS handshake with {} failed: {}", a.id, cfg.remote.to_string(),
                      limit.expired() ? std::string("timed out") : hec.message());
            tls.close();
            co_return;
        }
    }
    if (!cfg.opts.ws) {
        co_await pump(tls, a, sock, cfg);
        co_return;
    }
    ws_stream<tls_stream<tcp_stream>> ws(std::move(tls), codec::role::client, mask);
    if (co_await ws_open(ws, a, cfg)) {
        co_await pump(ws, a, sock, cfg);
    }
}

asio::awaitable<void> run_association(std::shared_ptr<association> a, udp_listener& l) {
    log::debug("#u{} udp association from {} ({} open)", a->id, to_string(a->from),
               udp_associations());
    co_await open_and_pump(*a, l.sock, l.cfg);
    a->stop();
    for (const auto& d : a->queue) {
        drop(*a, d.size(), "the connection ended");
    }
    a->queue.clear();
    log::debug("#u{} udp association from {} closed: {} datagrams up, {} down, {} dropped", a->id,
               to_string(a->from), a->up, a->down, a->dropped);
    if (auto it = l.assocs.find(a->from); it != l.assocs.end() && it->second == a) {
        l.assocs.erase(it);
    }
    release_udp_association();
}

asio::awaitable<void> receive_loop(udp_listener& l) {
    // One more than the largest datagram carried, to tell a larger one (IPv6 allows 65527).
    std::vector<std::uint8_t> buf(codec::max_udp_datagram + 1);
    udp::endpoint from;
    for (;;) {
        auto [ec, n] = co_await l.sock.async_receive_from(asio::buffer(buf), from, use_tuple);
        if (ec == asio::error::operation_aborted || !l.sock.is_open()) {
            co_return;
        }
        if (ec) {
            log::debug("udp: receive failed: {}", ec.message());
            continue;
        }
        if (n > codec::max_udp_datagram) {
            log::debug("udp: datagram from {} larger than {} bytes dropped", to_string(from),
                       codec::max_udp_datagram);
            continue;
        }
        std::shared_ptr<association> a;
        if (auto it = l.assocs.find(from); it != l.assocs.end() && !it->second->stopped) {
            a = it->second;
        } else {
            if (it != l.assocs.end()) {
                l.assocs.erase(it); // ending: its run erases nothing else, and ends on its own
            }
            if (!claim_udp_association()) {
                ++l.refused;
                log::debug("udp: datagram from {} dropped: association cap; {} so far",
                           to_string(from), l.refused);
                continue;
            }
            a = std::make_shared<association>(l.sock.get_executor(), from,
                                              next_association_id.fetch_add(1));
            l.assocs.emplace(from, a);
            asio::co_spawn(
                l.sock.get_executor(), run_association(a, l), [id = a->id](std::exception_ptr e) {
                    if (e) {
                        log::error("#u{} udp association ended by exception: {}", id, log::what(e));
                    }
                });
        }
        if (a->queue.size() >= udp_queue_datagrams || a->queued_bytes + n > udp_queue_bytes) {
            drop(*a, n, "queue full");
            continue;
        }
        a->queue.emplace_back(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
        a->queued_bytes += n;
        a->last = clock::now();
        ++a->up;
        a->wake.cancel();
    }
}

} // namespace

std::shared_ptr<udp_client> start_udp_client(asio::io_context& ctx, const endpoint& local,
                                             const client_config& cfg) {
    udp::resolver resolver(ctx);
    error_code ec;
    const auto results =
        resolver.resolve(local.host, std::to_string(local.port),
                         udp::resolver::passive | udp::resolver::numeric_service, ec);
    if (ec) {
        throw startup_error(
            fmt::format("udp: cannot resolve '{}': {}", local.to_string(), ec.message()));
    }
    auto client = std::make_shared<udp_client>();
    std::string last_error = "no address";
    for (const auto& r : results) {
        auto l = std::make_unique<udp_listener>(ctx, cfg);
        const udp::endpoint ep = r.endpoint();
        l->sock.open(ep.protocol(), ec);
        if (!ec && ep.address().is_v6()) {
            l->sock.set_option(asio::ip::v6_only(true), ec);
        }
        if (!ec) {
            tune_udp_socket(l->sock);
            l->sock.bind(ep, ec);
        }
        if (!ec) {
            l->sock.non_blocking(true, ec);
        }
        if (ec) {
            last_error = fmt::format("{}: {}", to_string(ep), ec.message());
            continue;
        }
        client->listeners.push_back(std::move(l));
    }
    if (client->listeners.empty()) {
        throw startup_error(
            fmt::format("udp: cannot listen on '{}': {}", local.to_string(), last_error));
    }
    for (auto& l : client->listeners) {
        asio::co_spawn(ctx, receive_loop(*l), [](std::exception_ptr e) {
            if (e) {
                log::error("udp: receive loop ended by an exception");
            }
        });
    }
    return client;
}

void stop_udp_client(udp_client& c) noexcept {
    for (auto& l : c.listeners) {
        error_code ignored;
        l->sock.close(ignored);
        for (auto& [from, a] : l->assocs) {
            a->stop();
        }
    }
}

} // namespace kaminari::net

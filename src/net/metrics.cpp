#include "kaminari/net/metrics.hpp"

#include <kaminari/log.hpp>
#include <kaminari/net/timeout.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>

namespace kaminari::net::metrics {

namespace {

using tcp = asio::ip::tcp;

struct alignas(64) slot {
    std::array<std::atomic<std::uint64_t>, count_> values{};
};

// Slots live as long as the process: a thread that ends leaves its counts behind.
std::mutex slots_mutex;
std::deque<slot>& all_slots() {
    static std::deque<slot> slots;
    return slots;
}

slot& my_slot() {
    thread_local slot* mine = [] {
        const std::lock_guard lock(slots_mutex);
        return &all_slots().emplace_back();
    }();
    return *mine;
}

struct series {
    counter c;
    std::string_view name;
    std::string_view help;
    std::string_view extra_label; ///< e.g. `kind="tls"`, or empty
    bool client_only = false;     ///< kaminaric's alone (warm connections)
};

constexpr std::array<series, count_> table{{
    {accepted, "kaminari_connections_accepted_total", "Connections accepted", ""},
    {refused, "kaminari_connections_refused_total",
     "Connections closed at once because max_conns was reached", ""},
    {closed, "kaminari_connections_closed_total", "Tunnel connections ended after relaying", ""},
    {idle_closed, "kaminari_connections_idle_closed_total",
     "Tunnel connections closed by idle_timeout", ""},
    {tls_failed, "kaminari_handshake_failures_total", "Failed handshakes by kind", "kind=\"tls\""},
    {websocket_failed, "kaminari_handshake_failures_total", "Failed handshakes by kind",
     "kind=\"websocket\""},
    {connect_failed, "kaminari_handshake_failures_total", "Failed handshakes by kind",
     "kind=\"connect\""},
    {bytes_upstream, "kaminari_bytes_total",
     "Bytes relayed, upstream (towards the remote) and downstream", "direction=\"upstream\""},
    {bytes_downstream, "kaminari_bytes_total",
     "Bytes relayed, upstream (towards the remote) and downstream", "direction=\"downstream\""},
    {pool_warm, "kaminari_pool_takes_total",
     "App connections with pool=: started on a ready connection, or dialed (none ready)",
     "result=\"warm\"", true},
    {pool_dialed, "kaminari_pool_takes_total",
     "App connections with pool=: started on a ready connection, or dialed (none ready)",
     "result=\"dialed\"", true},
    {pool_handed_over, "kaminari_pool_handed_over_total",
     "App connections moved to another worker whose pool had a connection ready", "", true},
}};

std::string_view http_response_head(bool found) {
    return found ? "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                 : "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n";
}

asio::awaitable<void> answer(tcp::socket socket, std::string program, std::string transport,
                             runtime& rt) {
    // The request head, a few seconds at most; only the request line matters.
    std::array<char, 4096> buf;
    std::size_t have = 0;
    {
        const deadline limit(socket.get_executor(), std::chrono::seconds(5), [&socket] {
            error_code ignored;
            socket.close(ignored);
        });
        while (have < buf.size()) {
            auto [ec, n] = co_await socket.async_read_some(
                asio::buffer(buf.data() + have, buf.size() - have), use_tuple);
            if (ec) {
                co_return;
            }
            have += n;
            if (std::string_view(buf.data(), have).find("\r\n\r\n") != std::string_view::npos) {
                break;
            }
        }
    }
    const std::string_view request(buf.data(), have);
    const bool found = request.starts_with("GET /metrics ") || request.starts_with("GET /metrics?");
    const std::string body =
        found ? render(program, transport, rt.active_connections()) : "not found\n";
    std::string out(http_response_head(found));
    out += fmt::format("Content-Length: {}\r\nConnection: close\r\n\r\n", body.size());
    out += body;
    co_await asio::async_write(socket, asio::buffer(out), use_tuple);
    error_code ignored;
    socket.shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> serve(tcp::acceptor acceptor, std::string program, std::string transport,
                            runtime& rt) {
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
        if (ec == asio::error::operation_aborted) {
            co_return;
        }
        if (ec) {
            asio::steady_timer backoff(acceptor.get_executor(), std::chrono::milliseconds(100));
            co_await backoff.async_wait(use_tuple);
            continue;
        }
        asio::co_spawn(acceptor.get_executor(), answer(std::move(socket), program, transport, rt),
                       asio::detached);
    }
}

} // namespace

void add(counter c, std::uint64_t n) noexcept {
    my_slot().values[c].fetch_add(n, std::memory_order_relaxed);
}

std::array<std::uint64_t, count_> snapshot() {
    std::array<std::uint64_t, count_> sum{};
    const std::lock_guard lock(slots_mutex);
    for (const slot& s : all_slots()) {
        for (std::size_t i = 0; i < count_; ++i) {
            sum[i] += s.values[i].load(std::memory_order_relaxed);
        }
    }
    return sum;
}

std::string render(std::string_view program, std::string_view transport, std::size_t active) {
    const auto values = snapshot();
    const std::string base = fmt::format("program=\"{}\",transport=\"{}\"", program, transport);
    std::string out;
    std::string_view last;
    for (const series& s : table) {
        if (s.client_only && program != "kaminaric") {
            continue;
        }
        if (s.name != last) {
            out += fmt::format("# HELP {} {}\n# TYPE {} counter\n", s.name, s.help, s.name);
            last = s.name;
        }
        out += fmt::format("{}{{{}{}{}}} {}\n", s.name, base, s.extra_label.empty() ? "" : ",",
                           s.extra_label, values[s.c]);
    }
    out += fmt::format("# HELP kaminari_connections_active Connections open now\n"
                       "# TYPE kaminari_connections_active gauge\n"
                       "kaminari_connections_active{{{}}} {}\n",
                       base, active);
    return out;
}

void start_server(runtime& rt, const endpoint& where, std::string program, std::string transport) {
    auto& ctx = rt.main_context();
    const tcp::endpoint ep(asio::ip::make_address(where.host), where.port);
    tcp::acceptor acceptor(ctx);
    acceptor.open(ep.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen();
    log::info("metrics: http://{}/metrics", where.to_string());
    asio::co_spawn(ctx, serve(std::move(acceptor), std::move(program), std::move(transport), rt),
                   asio::detached);
}

} // namespace kaminari::net::metrics

#pragma once

// The process runtime: worker threads with one io_context each, listeners, the accept loop and
// connecting to the remote.

#include <kaminari/cli.hpp>
#include <kaminari/net/stream.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

namespace kaminari::net {

/// Worker threads, each running its own single-threaded io_context. A connection stays on the
/// worker it was handed to for its whole life, so the data path needs no locks.
class runtime {
public:
    /// `threads` == 0 means one per core.
    explicit runtime(std::size_t threads);
    ~runtime();
    runtime(const runtime&) = delete;
    runtime& operator=(const runtime&) = delete;

    /// The io_context of worker 0, which also runs the accept loops and signal handling.
    asio::io_context& main_context() noexcept { return *contexts_.front(); }

    /// Executors handed out round-robin to new connections.
    asio::any_io_executor next_executor() noexcept;

    std::size_t size() const noexcept { return contexts_.size(); }

    /// Runs worker 0 on the calling thread and the others on their own threads; returns after
    /// stop() once every worker has returned.
    void run();

    /// Stops every worker. Safe from any thread and from a handler.
    void stop() noexcept;

    /// Connections open in this process (accepted and not yet ended), across all listeners;
    /// accept_loop() keeps the count. Safe from any thread.
    std::size_t active_connections() const noexcept {
        return active_.load(std::memory_order_relaxed);
    }

    /// Counts one more open connection unless `max` (0 = no cap) are open already; returns
    /// whether it did. Called by the accept loops, which all run on worker 0, so two calls
    /// never race each other; ends counted by end_connection() on other workers only lower it.
    bool begin_connection(std::size_t max) noexcept {
        if (max != 0 && active_.load(std::memory_order_relaxed) >= max) {
            return false;
        }
        active_.fetch_add(1, std::memory_order_relaxed);
        return true;
    }

    /// Counts an open connection as ended. Safe from any thread.
    void end_connection() noexcept { active_.fetch_sub(1, std::memory_order_relaxed); }

private:
    std::vector<std::unique_ptr<asio::io_context>> contexts_;
    std::vector<std::jthread> threads_;
    std::atomic<std::size_t> next_{0};
    std::atomic<std::size_t> active_{0};
};

/// Called for every accepted connection on the executor of its worker; `id` numbers
/// connections for the logs. The returned coroutine owns the socket.
using connection_handler =
    std::function<asio::awaitable<void>(asio::ip::tcp::socket socket, std::uint64_t id)>;

/// Binds a listener on every address `local` resolves to (a name may give IPv4 and IPv6).
/// Throws startup_error naming the address when none can be bound.
std::vector<asio::ip::tcp::acceptor> bind_listeners(asio::io_context& ctx, const endpoint& local);

/// Accepts forever. Every connection is spawned on the next worker with a completion handler
/// that logs an escaping exception (which ends only that connection). Accept errors such as
/// EMFILE are logged once per burst and followed by a 100 ms back-off; the loop keeps serving.
/// With `max_conns` (0 = no cap) connections open in the process (rt.active_connections()),
/// a new connection is accepted and closed at once, so the client sees the end of the stream
/// right away instead of waiting in the backlog; refusals are logged once per burst, and
/// serving resumes as soon as a connection ends. `handler` must outlive the loop.
asio::awaitable<void> accept_loop(asio::ip::tcp::acceptor acceptor, runtime& rt,
                                  const connection_handler& handler, std::size_t max_conns = 0);

/// Resolves `remote` (every time, so DNS changes are followed) and connects to the first of its
/// addresses that accepts, within `limit`. Sets TCP_NODELAY.
asio::awaitable<std::pair<error_code, asio::ip::tcp::socket>>
connect_remote(endpoint remote, std::chrono::milliseconds limit);

/// TCP keepalive timing on every socket: the first probe after this long without traffic,
/// then one every keepalive_interval; keepalive_probes unanswered probes drop the connection.
/// A peer that vanished (a laptop closed, a NAT mapping dropped) is noticed within about two
/// minutes instead of the kernel's default of over two hours.
inline constexpr int keepalive_idle_s = 60;
inline constexpr int keepalive_interval_s = 15;
inline constexpr int keepalive_probes = 4;

/// Sets TCP_NODELAY and SO_KEEPALIVE with the timing above; errors are ignored (the socket may
/// already be dead).
void tune_socket(asio::ip::tcp::socket& socket) noexcept;

/// Raises RLIMIT_NOFILE to its hard limit; returns the new soft limit.
std::uint64_t raise_open_file_limit() noexcept;

} // namespace kaminari::net

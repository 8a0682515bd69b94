#pragma once

// The process runtime: worker threads with one io_context each, and the count of open
// connections they share.

#include <kaminari/net/stream.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
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

    /// The io_context of worker `i` (< size()).
    asio::io_context& context(std::size_t i) noexcept { return *contexts_[i]; }

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
    /// whether it did. Safe from any thread: the accept loops of every worker call it.
    bool begin_connection(std::size_t max) noexcept {
        if (max == 0) {
            active_.fetch_add(1, std::memory_order_relaxed);
            return true;
        }
        std::size_t now = active_.load(std::memory_order_relaxed);
        do {
            if (now >= max) {
                return false;
            }
        } while (!active_.compare_exchange_weak(now, now + 1, std::memory_order_relaxed));
        return true;
    }

    /// Counts an open connection as ended. Safe from any thread.
    void end_connection() noexcept { active_.fetch_sub(1, std::memory_order_relaxed); }

private:
    std::vector<std::unique_ptr<asio::io_context>> contexts_;
    std::vector<std::jthread> threads_;
    std::atomic<std::size_t> active_{0};
};

/// Raises RLIMIT_NOFILE to its hard limit; returns the new soft limit.
std::uint64_t raise_open_file_limit() noexcept;

} // namespace kaminari::net

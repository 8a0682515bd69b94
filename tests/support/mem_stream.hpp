#pragma once

// An in-memory connected pair of byte streams for adapter tests (beast's test::stream in
// coroutine form). Both ends model net::byte_stream and live on one executor.
//
//     test::runner rn;
//     auto [a, b] = test::mem_stream::make_pair(rn.ctx.get_executor());
//     a.read_size(3);            // every read_some on `a` returns at most 3 bytes
//     b.write_size(5);           // writes on `b` reach `a` in pieces of at most 5 bytes
//     a.fail_after(2);           // the 3rd and later operations on `a` fail
//     a.append("\x82\x00");      // bytes that `a` reads next, as if `b` had written them
//     test::run(rn.ctx, task(a, b));  // or test::runner::spawn + run for several tasks
//
// Semantics, per end:
// - read_some waits until bytes are available; after the peer's shutdown_send() or close()
//   and once the bytes are drained it returns asio::error::eof. After this end's own close()
//   it returns asio::error::operation_aborted.
// - write delivers all bytes (head then body) in pieces of write_size(), yielding to the
//   executor between pieces, so the peer can read partial data. After this end's
//   shutdown_send() or close(), or the peer's close(), it fails with asio::error::broken_pipe.
// - fail_after(n): the first n operations (read_some, write, shutdown_send) from now behave
//   normally; every later one fails with `mem_stream::injected_error` (connection_reset),
//   without moving any bytes.
// - close(): aborts this end's pending read; the peer then reads EOF.
// Not thread safe: use one thread, as the real layers do.

#include <kaminari/net/stream.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <span>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

namespace kaminari::test {

namespace detail {

// Bytes travelling in one direction.
struct mem_pipe {
    explicit mem_pipe(const asio::any_io_executor& ex)
        : wake(ex) {
        wake.expires_at(asio::steady_timer::time_point::max());
    }

    std::vector<std::uint8_t> data; // unread bytes are data[pos, size)
    std::size_t pos = 0;
    bool eof = false;         // the writing end shut down or closed
    bool reader_gone = false; // the reading end closed
    asio::steady_timer wake;  // cancelled to wake a waiting reader

    std::size_t available() const noexcept { return data.size() - pos; }
    void notify() { wake.cancel(); }
};

struct mem_pair_state {
    explicit mem_pair_state(const asio::any_io_executor& ex)
        : pipes{mem_pipe(ex), mem_pipe(ex)} {}
    mem_pipe pipes[2]; // pipes[i] is read by end i
};

} // namespace detail

/// One end of an in-memory connected pair; see the file comment.
class mem_stream {
public:
    using executor_type = asio::any_io_executor;

    /// The error every operation returns once fail_after() has run out.
    static constexpr auto injected_error = asio::error::connection_reset;

    /// Makes two connected ends on `ex`.
    static std::pair<mem_stream, mem_stream> make_pair(const asio::any_io_executor& ex) {
        auto state = std::make_shared<detail::mem_pair_state>(ex);
        return {mem_stream(state, 0, ex), mem_stream(state, 1, ex)};
    }

    executor_type get_executor() const noexcept { return ex_; }

    /// Caps the bytes every read_some returns (0: no cap).
    void read_size(std::size_t n) noexcept { read_cap_ = n; }

    /// Caps the piece size in which writes reach the peer (0: no cap).
    void write_size(std::size_t n) noexcept { write_cap_ = n; }

    /// Lets `n` more operations succeed; the ones after fail with injected_error.
    void fail_after(std::size_t n) noexcept { ops_left_ = n; }

    /// Number of operations started on this end so far.
    std::size_t operations() const noexcept { return ops_; }

    /// Number of write() calls started on this end so far.
    std::size_t writes() const noexcept { return writes_; }

    /// Queues bytes for this end to read, as if the peer had written them.
    void append(std::span<const std::uint8_t> bytes) {
        auto& in = inbox();
        in.data.insert(in.data.end(), bytes.begin(), bytes.end());
        in.notify();
    }
    void append(std::string_view text) {
        append({reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
    }

    /// Bytes waiting to be read by this end.
    std::size_t available() const noexcept { return inbox().available(); }

    /// Takes every byte waiting to be read by this end, without waiting.
    std::vector<std::uint8_t> take() {
        auto& in = inbox();
        std::vector<std::uint8_t> out(in.data.begin() + static_cast<std::ptrdiff_t>(in.pos),
                                      in.data.end());
        in.data.clear();
        in.pos = 0;
        return out;
    }

    /// True once the peer has shut down its sending side or closed.
    bool peer_done() const noexcept { return inbox().eof; }

    asio::awaitable<net::io_result> read_some(std::span<std::uint8_t> buf) {
        if (!start_op()) {
            co_return net::io_result{injected_error, 0};
        }
        for (;;) {
            auto& in = inbox();
            if (in.reader_gone) {
                co_return net::io_result{asio::error::operation_aborted, 0};
            }
            if (in.available() > 0) {
                std::size_t n = std::min(buf.size(), in.available());
                if (read_cap_ != 0) {
                    n = std::min(n, read_cap_);
                }
                std::memcpy(buf.data(), in.data.data() + in.pos, n);
                in.pos += n;
                if (in.pos == in.data.size()) {
                    in.data.clear();
                    in.pos = 0;
                }
                co_return net::io_result{{}, n};
            }
            if (in.eof) {
                co_return net::io_result{asio::error::eof, 0};
            }
            co_await in.wake.async_wait(net::use_tuple);
        }
    }

    asio::awaitable<net::io_result> write(std::span<const std::uint8_t> head,
                                          std::span<std::uint8_t> body) {
        ++writes_;
        if (!start_op()) {
            co_return net::io_result{injected_error, 0};
        }
        const std::array<std::span<const std::uint8_t>, 2> parts{head, body};
        for (std::span<const std::uint8_t> part : parts) {
            while (!part.empty()) {
                auto& out = outbox();
                if (out.eof || out.reader_gone) {
                    co_return net::io_result{asio::error::broken_pipe, 0};
                }
                const std::size_t n =
                    write_cap_ == 0 ? part.size() : std::min(part.size(), write_cap_);
                out.data.insert(out.data.end(), part.begin(),
                                part.begin() + static_cast<std::ptrdiff_t>(n));
                out.notify();
                part = part.subspan(n);
                if (write_cap_ != 0) {
                    co_await asio::post(ex_, asio::use_awaitable);
                }
            }
        }
        co_return net::io_result{{}, head.size() + body.size()};
    }

    asio::awaitable<error_code> shutdown_send() {
        if (!start_op()) {
            co_return error_code(injected_error);
        }
        outbox().eof = true;
        outbox().notify();
        co_return error_code{};
    }

    void close() noexcept {
        if (!state_) {
            return;
        }
        inbox().reader_gone = true;
        inbox().notify();
        outbox().eof = true;
        outbox().notify();
    }

private:
    mem_stream(std::shared_ptr<detail::mem_pair_state> state, int side,
               const asio::any_io_executor& ex)
        : state_(std::move(state))
        , side_(side)
        , ex_(ex) {}

    detail::mem_pipe& inbox() const noexcept { return state_->pipes[side_]; }
    detail::mem_pipe& outbox() const noexcept { return state_->pipes[1 - side_]; }

    bool start_op() noexcept {
        ++ops_;
        if (ops_left_ == 0) {
            return false;
        }
        if (ops_left_ != unlimited) {
            --ops_left_;
        }
        return true;
    }

    static constexpr std::size_t unlimited = std::numeric_limits<std::size_t>::max();

    std::shared_ptr<detail::mem_pair_state> state_;
    int side_ = 0;
    asio::any_io_executor ex_;
    std::size_t read_cap_ = 0;
    std::size_t write_cap_ = 0;
    std::size_t ops_left_ = unlimited;
    std::size_t ops_ = 0;
    std::size_t writes_ = 0;
};

static_assert(net::byte_stream<mem_stream>);

/// Runs coroutines concurrently on its own io_context: spawn() each, then run().
///
///     test::runner rn;
///     auto [a, b] = test::mem_stream::make_pair(rn.ctx.get_executor());
///     rn.spawn(client_side(a));
///     rn.spawn(server_side(b));
///     rn.run();  // rethrows the first exception; throws if still running after the limit
class runner {
public:
    asio::io_context ctx{1};

    void spawn(asio::awaitable<void> task) {
        asio::co_spawn(ctx, std::move(task), [this](std::exception_ptr e) {
            if (e && !failure_) {
                failure_ = e;
            }
        });
    }

    /// Runs until every spawned coroutine finished. Throws std::runtime_error if that takes
    /// longer than `limit` (a hang in the code under test: a mem_stream never times out).
    void run(std::chrono::steady_clock::duration limit = std::chrono::seconds(30)) {
        ctx.restart();
        ctx.run_for(limit);
        if (!ctx.stopped()) {
            ctx.stop();
            throw std::runtime_error("test::runner: still running after the time limit (hang?)");
        }
        if (failure_) {
            std::rethrow_exception(std::exchange(failure_, nullptr));
        }
    }

private:
    std::exception_ptr failure_;
};

/// Runs `task` on `ctx` until it and everything else on `ctx` finish; rethrows its exception.
/// Throws std::runtime_error if that takes longer than `limit` (a hang in the code under test).
inline void run(asio::io_context& ctx, asio::awaitable<void> task,
                std::chrono::steady_clock::duration limit = std::chrono::seconds(30)) {
    std::exception_ptr failure;
    asio::co_spawn(ctx, std::move(task), [&failure](std::exception_ptr e) { failure = e; });
    ctx.restart();
    ctx.run_for(limit);
    if (!ctx.stopped()) {
        ctx.stop();
        throw std::runtime_error("test::run: still running after the time limit (hang?)");
    }
    if (failure) {
        std::rethrow_exception(failure);
    }
}

} // namespace kaminari::test

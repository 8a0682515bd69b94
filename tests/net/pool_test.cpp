#include "kaminari/net/pool.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace kaminari::net {
namespace {

using namespace std::chrono_literals;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;

// A silent server on 127.0.0.1 that keeps every connection it accepts, and a pool of tcp
// connections to it that notes when each one starts opening.
struct pool_fixture {
    asio::io_context io;
    tcp::acceptor acceptor{io, {asio::ip::make_address("127.0.0.1"), 0}};
    std::vector<tcp::socket> held;
    std::vector<steady::time_point> opened;
    std::shared_ptr<warm_pool<tcp_stream>> pool;

    explicit pool_fixture(std::size_t size) {
        accept_next();
        pool = std::make_shared<warm_pool<tcp_stream>>(
            io.get_executor(), size, 30s, early_bytes::fatal,
            [this]() -> asio::awaitable<std::optional<tcp_stream>> {
                opened.push_back(steady::now());
                tcp::socket s(io);
                co_await s.async_connect(acceptor.local_endpoint(), asio::use_awaitable);
                co_return tcp_stream(std::move(s));
            });
    }

    void accept_next() {
        acceptor.async_accept([this](const boost::system::error_code& ec, tcp::socket s) {
            if (!ec) {
                held.push_back(std::move(s));
                accept_next();
            }
        });
    }

    // Runs the loop until `done` or 5 s have passed; whether `done`.
    bool run_until(const std::function<bool()>& done) {
        const auto until = steady::now() + 5s;
        while (!done() && steady::now() < until) {
            io.run_one_for(10ms);
        }
        return done();
    }

    // Takes a connection; `at` is when the take started.
    std::optional<warm_connection<tcp_stream>> take(steady::time_point& at) {
        std::optional<warm_connection<tcp_stream>> got;
        bool finished = false;
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                at = steady::now();
                got = co_await pool->take();
                finished = true;
            },
            asio::detached);
        run_until([&] { return finished; });
        return got;
    }
};

// A taken connection's replacement starts opening refill_delay after the take, not at once: on
// the worker that runs the taking app's connection, its connect and TLS key share would
// otherwise come before the app's first bytes go out.
TEST(WarmPool, ATakenConnectionIsReplacedAfterTheRefillDelay) {
    pool_fixture f(2);
    f.pool->start();
    ASSERT_TRUE(f.run_until([&] { return f.pool->idle() == 2; }));
    ASSERT_EQ(f.opened.size(), 2U);

    steady::time_point taken_at;
    auto got = f.take(taken_at);
    ASSERT_TRUE(got);
    // The loop runs on for half the delay: a replacement spawned by the take would open now.
    // (A refill timer that fired meanwhile, the thread held up, only spawns the opener, which
    // runs after this loop.)
    while (steady::now() - taken_at < warm_pool<tcp_stream>::refill_delay / 2) {
        f.io.run_one_for(100us);
    }
    EXPECT_EQ(f.opened.size(), 2U) << "a replacement opened within half the refill delay";
    ASSERT_TRUE(f.run_until([&] { return f.pool->idle() == 2; }));
    ASSERT_EQ(f.opened.size(), 3U);
    EXPECT_GE(f.opened[2] - taken_at, warm_pool<tcp_stream>::refill_delay);

    // Two takes in a row: both replacements open, together, after the delay.
    steady::time_point first_at, second_at;
    auto a = f.take(first_at);
    auto b = f.take(second_at);
    ASSERT_TRUE(a);
    ASSERT_TRUE(b);
    ASSERT_TRUE(f.run_until([&] { return f.pool->idle() == 2; }));
    ASSERT_EQ(f.opened.size(), 5U);
    EXPECT_GE(f.opened[3] - first_at, warm_pool<tcp_stream>::refill_delay);
    EXPECT_GE(f.opened[4] - first_at, warm_pool<tcp_stream>::refill_delay);
    f.pool->stop();
}

// A take from an empty pool (its connections all in use) also waits before opening more, and a
// pool stopped meanwhile opens none.
TEST(WarmPool, AStoppedPoolOpensNoReplacementAfterATake) {
    pool_fixture f(1);
    f.pool->start();
    ASSERT_TRUE(f.run_until([&] { return f.pool->idle() == 1; }));
    steady::time_point at;
    ASSERT_TRUE(f.take(at));
    EXPECT_FALSE(f.take(at)) << "the pool's one connection was already taken";
    f.pool->stop();
    f.io.run_for(warm_pool<tcp_stream>::refill_delay * 4);
    EXPECT_EQ(f.opened.size(), 1U);
    EXPECT_EQ(f.pool->idle(), 0U);
}

} // namespace
} // namespace kaminari::net

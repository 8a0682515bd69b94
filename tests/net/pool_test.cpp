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

    explicit pool_fixture(std::size_t size, std::size_t max_size = 0,
                          std::chrono::milliseconds max_age = 30s) {
        accept_next();
        pool = std::make_shared<warm_pool<tcp_stream>>(
            io.get_executor(), size, max_size, max_age, early_bytes::fatal,
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

    // Takes a connection (for the holder of `claim`); `at` is when the take started.
    std::optional<warm_connection<tcp_stream>> take(steady::time_point& at,
                                                    ready_claim claim = {}) {
        std::optional<warm_connection<tcp_stream>> got;
        bool finished = false;
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                at = steady::now();
                got = co_await pool->take(std::move(claim));
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

// pool_max=: takes within burst_window of each other (the ones that found the pool empty too)
// are kept ready from then on, up to the pool's maximum, and no more are opened. (Whether a take
// in a burst finds a replacement already open depends on timing, so the checks count hits.)
TEST(WarmPool, APoolThatMayGrowKeepsABurstReady) {
    pool_fixture f(1, 5);
    f.pool->start();
    ASSERT_TRUE(f.run_until([&] { return f.pool->idle() == 1; }));
    steady::time_point at;
    std::size_t hits = 0;
    for (int i = 0; i < 4; ++i) {
        hits += f.take(at) ? 1 : 0;
    }
    EXPECT_EQ(f.pool->target(), 4U);
    ASSERT_TRUE(f.run_until([&] { return f.pool->idle() == 4; }));
    f.io.run_for(50ms);
    EXPECT_EQ(f.pool->idle(), 4U);
    EXPECT_EQ(f.opened.size(), hits + 4) << "more opened than the burst took";

    // The next burst finds them warm; one beyond the maximum keeps only the maximum ready.
    for (int i = 0; i < 4; ++i) {
        EXPECT_TRUE(f.take(at)) << "take " << i + 1 << " of the second burst found none ready";
    }
    hits += 4;
    for (int i = 0; i < 3; ++i) {
        hits += f.take(at) ? 1 : 0;
    }
    EXPECT_EQ(f.pool->target(), 5U);
    ASSERT_TRUE(f.run_until([&] { return f.pool->idle() == 5; }));
    f.io.run_for(50ms);
    EXPECT_EQ(f.pool->idle(), 5U);
    EXPECT_EQ(f.opened.size(), hits + 5);
    f.pool->stop();
}

// A grown pool goes back to its size once no burst has reached it for max_age: the
// connections opened for the burst expire and only `size` are replaced.
TEST(WarmPool, AGrownPoolShrinksWhenNoBurstReachesIt) {
    constexpr auto max_age = 400ms;
    pool_fixture f(1, 4, max_age);
    f.pool->start();
    ASSERT_TRUE(f.run_until([&] { return f.pool->idle() == 1; }));
    steady::time_point at;
    for (int i = 0; i < 3; ++i) {
        f.take(at);
    }
    ASSERT_EQ(f.pool->target(), 3U);
    ASSERT_TRUE(f.run_until([&] { return f.pool->idle() == 3; }));
    ASSERT_TRUE(f.run_until([&] { return f.pool->target() == 1 && f.pool->idle() == 1; }));
    // From now on one connection, replaced as it expires: one opened per max_age at most.
    const auto shrunk = f.opened.size();
    f.io.run_for(max_age + 100ms);
    ASSERT_TRUE(f.run_until([&] { return f.pool->idle() == 1; }));
    EXPECT_EQ(f.pool->target(), 1U);
    EXPECT_LE(f.opened.size(), shrunk + 2);
    f.pool->stop();
}

// Claims (app connections on their way from another worker) count against the ready
// connections: no more claims than are ready, and each frees its connection for another claim
// when released or destroyed.
TEST(WarmPool, ClaimsCountAgainstTheReadyConnections) {
    pool_fixture f(3);
    f.pool->start();
    ASSERT_TRUE(f.run_until([&] { return f.pool->idle() == 3; }));
    EXPECT_EQ(f.pool->unclaimed(), 3U);
    std::vector<ready_claim> claims;
    for (int i = 0; i < 3; ++i) {
        claims.push_back(f.pool->claim());
        ASSERT_TRUE(claims.back()) << "claim " << i + 1 << " of 3 ready refused";
    }
    EXPECT_EQ(f.pool->unclaimed(), 0U);
    EXPECT_FALSE(f.pool->claim()) << "a fourth claim on three ready connections";
    claims[0].release();
    EXPECT_EQ(f.pool->unclaimed(), 1U);
    claims.erase(claims.begin() + 1); // destroyed: released too
    EXPECT_EQ(f.pool->unclaimed(), 2U);

    // A take by a claimant: the claim is released as the connection leaves the ready ones,
    // while the take still waits for the connection's watch to let go of it (else, for that
    // while, other workers would count it twice: taken and claimed).
    bool finished = false;
    asio::co_spawn(
        f.io,
        [&, claim = std::move(claims[1])]() mutable -> asio::awaitable<void> {
            co_await f.pool->take(std::move(claim));
            finished = true;
        },
        asio::detached);
    ASSERT_TRUE(f.run_until([&] { return f.pool->ready() == 2; }));
    ASSERT_FALSE(finished) << "the take did not wait for the watch; nothing to check";
    EXPECT_EQ(f.pool->claimed(), 0U);
    EXPECT_EQ(f.pool->unclaimed(), 2U);
    ASSERT_TRUE(f.run_until([&] { return finished; }));
    steady::time_point at;
    // One that finds none releases its claim too.
    ready_claim other = f.pool->claim();
    ASSERT_TRUE(other);
    EXPECT_EQ(f.pool->claimed(), 1U);
    f.pool->stop();
    EXPECT_FALSE(f.take(at, std::move(other)));
    EXPECT_EQ(f.pool->claimed(), 0U);
}

// A claim may outlive its pool (kaminaric stopping with a handed-over connection on its way).
TEST(WarmPool, AClaimOutlivesItsPool) {
    ready_claim late;
    {
        pool_fixture f(1);
        f.pool->start();
        ASSERT_TRUE(f.run_until([&] { return f.pool->idle() == 1; }));
        late = f.pool->claim();
        ASSERT_TRUE(late);
        f.pool->stop();
    }
    late.release();
    EXPECT_FALSE(late);
}

// Without pool_max a burst does not grow the pool.
TEST(WarmPool, AFixedPoolDoesNotGrow) {
    pool_fixture f(1);
    f.pool->start();
    ASSERT_TRUE(f.run_until([&] { return f.pool->idle() == 1; }));
    steady::time_point at;
    std::size_t hits = 0;
    for (int i = 0; i < 4; ++i) {
        hits += f.take(at) ? 1 : 0;
    }
    EXPECT_EQ(f.pool->target(), 1U);
    ASSERT_TRUE(f.run_until([&] { return f.pool->idle() == 1; }));
    f.io.run_for(50ms);
    EXPECT_EQ(f.pool->idle(), 1U);
    EXPECT_EQ(f.opened.size(), hits + 1);
    f.pool->stop();
}

} // namespace
} // namespace kaminari::net

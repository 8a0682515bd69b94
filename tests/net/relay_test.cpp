#include "kaminari/net/relay.hpp"

#include "support/mem_stream.hpp"

#include <boost/asio/steady_timer.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

namespace kaminari::net {
namespace {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;
using test::mem_stream;
using test::runner;

// app_outer <-> app_inner =relay= up_inner <-> up_outer
struct relay_setup {
    explicit relay_setup(runner& rn) {
        auto [a, b] = mem_stream::make_pair(rn.ctx.get_executor());
        auto [c, d] = mem_stream::make_pair(rn.ctx.get_executor());
        app_outer = std::make_unique<mem_stream>(std::move(a));
        app_inner = std::make_unique<mem_stream>(std::move(b));
        up_inner = std::make_unique<mem_stream>(std::move(c));
        up_outer = std::make_unique<mem_stream>(std::move(d));
    }
    std::unique_ptr<mem_stream> app_outer, app_inner, up_inner, up_outer;
};

asio::awaitable<void> run_relay(mem_stream& a, mem_stream& b, clock::duration idle,
                                relay_result& out, clock::time_point& ended) {
    out = co_await relay(a, b, idle);
    ended = clock::now();
}

asio::awaitable<void> sleep(clock::duration d) {
    asio::steady_timer t(co_await asio::this_coro::executor, d);
    co_await t.async_wait(use_tuple);
}

// Writes one byte every `gap`, `count` times, then half-closes.
asio::awaitable<void> trickle(mem_stream& s, clock::duration gap, int count) {
    std::uint8_t byte = 'x';
    for (int i = 0; i < count; ++i) {
        co_await sleep(gap);
        auto [ec, n] = co_await write_all(s, std::span(&byte, 1));
        EXPECT_FALSE(ec);
    }
    EXPECT_FALSE(co_await s.shutdown_send());
}

// Reads until end of stream or an error; counts the bytes.
asio::awaitable<void> drain(mem_stream& s, std::size_t& got, error_code& end) {
    std::vector<std::uint8_t> buf(256);
    for (;;) {
        auto [ec, n] = co_await s.read_some(buf);
        if (ec) {
            end = ec;
            co_return;
        }
        got += n;
    }
}

TEST(Relay, IdleTimeoutClosesAQuietConnection) {
    runner rn;
    relay_setup s(rn);
    relay_result r;
    clock::time_point ended;
    std::size_t got = 0;
    error_code app_end, up_end;
    std::size_t app_got = 0;
    const auto start = clock::now();
    rn.spawn(run_relay(*s.app_inner, *s.up_inner, 200ms, r, ended));
    rn.spawn(trickle(*s.app_outer, 10ms, 3)); // 3 bytes, then a half-close that moves nothing
    rn.spawn(drain(*s.up_outer, got, up_end));
    rn.spawn(drain(*s.app_outer, app_got, app_end));
    rn.run(5s);
    EXPECT_TRUE(r.idle);
    EXPECT_EQ(r.a_to_b.bytes, 3u);
    EXPECT_EQ(got, 3u);
    // The half-closed direction ended cleanly; the quiet one was cut by the timeout.
    EXPECT_FALSE(r.a_to_b.ec);
    EXPECT_TRUE(r.b_to_a.ec);
    EXPECT_EQ(up_end, asio::error::eof);
    EXPECT_EQ(app_end, asio::error::eof); // the relay closed its end: the app reads EOF
    const auto took = ended - start;
    EXPECT_GE(took, 230ms);                     // 30 ms of trickle, then the whole limit of silence
    EXPECT_LT(took, 230ms + 200ms / 4 + 400ms); // generous: CI machines are busy
}

TEST(Relay, TrafficKeepsTheIdleTimeoutAway) {
    runner rn;
    relay_setup s(rn);
    relay_result r;
    clock::time_point ended;
    std::size_t up_got = 0, app_got = 0;
    error_code up_end, app_end;
    // 20 bytes 40 ms apart: 800 ms of traffic under a 150 ms limit.
    rn.spawn(run_relay(*s.app_inner, *s.up_inner, 150ms, r, ended));
    rn.spawn(trickle(*s.app_outer, 40ms, 20));
    rn.spawn(trickle(*s.up_outer, 40ms, 20));
    rn.spawn(drain(*s.up_outer, up_got, up_end));
    rn.spawn(drain(*s.app_outer, app_got, app_end));
    rn.run(5s);
    EXPECT_FALSE(r.idle);
    EXPECT_FALSE(r.a_to_b.ec);
    EXPECT_FALSE(r.b_to_a.ec);
    EXPECT_EQ(r.a_to_b.bytes, 20u);
    EXPECT_EQ(r.b_to_a.bytes, 20u);
    EXPECT_EQ(up_got, 20u);
    EXPECT_EQ(app_got, 20u);
}

TEST(Relay, ZeroIdleLimitMeansNoTimeout) {
    runner rn;
    relay_setup s(rn);
    relay_result r;
    clock::time_point ended;
    std::size_t up_got = 0, app_got = 0;
    error_code up_end, app_end;
    rn.spawn(run_relay(*s.app_inner, *s.up_inner, clock::duration::zero(), r, ended));
    rn.spawn(trickle(*s.app_outer, 300ms, 1));
    rn.spawn(trickle(*s.up_outer, 300ms, 1));
    rn.spawn(drain(*s.up_outer, up_got, up_end));
    rn.spawn(drain(*s.app_outer, app_got, app_end));
    rn.run(5s);
    EXPECT_FALSE(r.idle);
    EXPECT_EQ(r.a_to_b.bytes, 1u);
    EXPECT_EQ(r.b_to_a.bytes, 1u);
}

TEST(WaitIdle, EndsOnlyAfterProgressStops) {
    runner rn;
    std::uint64_t counter = 0;
    clock::time_point done;
    const auto start = clock::now();
    rn.spawn([](std::uint64_t& c) -> asio::awaitable<void> {
        for (int i = 0; i < 10; ++i) {
            co_await sleep(20ms);
            ++c;
        }
    }(counter));
    rn.spawn([](std::uint64_t& c, clock::time_point& d) -> asio::awaitable<void> {
        EXPECT_FALSE(co_await wait_idle([&c] { return c; }, 100ms));
        d = clock::now();
    }(counter, done));
    rn.run(5s);
    EXPECT_EQ(counter, 10u);
    EXPECT_GE(done - start, 300ms);
    EXPECT_LT(done - start, 300ms + 100ms / 4 + 400ms);
}

} // namespace
} // namespace kaminari::net

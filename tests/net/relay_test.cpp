#include "kaminari/net/relay.hpp"

#include "support/mem_stream.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <utility>
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
    // 20 bytes 40 ms apart: 800 ms of traffic under a 500 ms limit (a gap would need a 460 ms
    // scheduling stall of this process to look idle; CI runs this next to heavy e2e tests).
    rn.spawn(run_relay(*s.app_inner, *s.up_inner, 500ms, r, ended));
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

// --- over loopback TCP: directions whose source is a socket run in bursts -------------------

using tcp = asio::ip::tcp;

// Two connected loopback sockets.
std::pair<tcp_stream, tcp_stream> tcp_pair(asio::io_context& ctx) {
    tcp::acceptor acceptor(ctx, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    tcp::socket a(ctx);
    a.connect(acceptor.local_endpoint());
    return {tcp_stream(std::move(a)), tcp_stream(acceptor.accept())};
}

// app_outer <-> app_inner =relay= up_inner <-> up_outer, all TCP.
struct tcp_setup {
    explicit tcp_setup(runner& rn) {
        auto [a, b] = tcp_pair(rn.ctx);
        auto [c, d] = tcp_pair(rn.ctx);
        app_outer = std::make_unique<tcp_stream>(std::move(a));
        app_inner = std::make_unique<tcp_stream>(std::move(b));
        up_inner = std::make_unique<tcp_stream>(std::move(c));
        up_outer = std::make_unique<tcp_stream>(std::move(d));
    }
    std::unique_ptr<tcp_stream> app_outer, app_inner, up_inner, up_outer;
};

std::uint8_t pattern(std::size_t i, std::uint8_t seed) {
    return static_cast<std::uint8_t>((i * 131 + i / 251 + seed) & 0xff);
}

// Writes `total` pattern bytes in `chunk`s, pausing `gap` after each (so the relay's source
// runs dry between them), then half-closes.
asio::awaitable<void> send_pattern(tcp_stream& s, std::size_t total, std::size_t chunk,
                                   clock::duration gap, std::uint8_t seed) {
    std::vector<std::uint8_t> buf(chunk);
    for (std::size_t sent = 0; sent < total;) {
        const std::size_t n = std::min(chunk, total - sent);
        for (std::size_t i = 0; i < n; ++i) {
            buf[i] = pattern(sent + i, seed);
        }
        auto [ec, w] = co_await write_all(s, std::span(buf).first(n));
        EXPECT_FALSE(ec) << ec.message();
        if (ec) {
            co_return;
        }
        sent += n;
        if (gap > clock::duration::zero()) {
            co_await sleep(gap);
        }
    }
    EXPECT_FALSE(co_await s.shutdown_send());
}

// Reads to the end; counts the bytes and the first that differs from the pattern.
asio::awaitable<void> check_pattern(tcp_stream& s, std::uint8_t seed, std::size_t& got,
                                    std::size_t& bad, error_code& end) {
    std::vector<std::uint8_t> buf(64 * 1024);
    bad = SIZE_MAX;
    for (;;) {
        auto [ec, n] = co_await s.read_some(buf);
        if (ec) {
            end = ec;
            co_return;
        }
        for (std::size_t i = 0; i < n && bad == SIZE_MAX; ++i) {
            if (buf[i] != pattern(got + i, seed)) {
                bad = got + i;
            }
        }
        got += n;
    }
}

asio::awaitable<void> run_tcp_relay(tcp_stream& a, tcp_stream& b, clock::duration idle,
                                    relay_result& out) {
    out = co_await relay(a, b, idle);
}

// Spawns relay(a, b) with its cancellation bound to `cancel`; `ended` is set once it returns.
void spawn_cancellable_relay(runner& rn, tcp_stream& a, tcp_stream& b, relay_result& out,
                             bool& ended, asio::cancellation_signal& cancel) {
    asio::co_spawn(
        rn.ctx,
        [](tcp_stream& x, tcp_stream& y, relay_result& r, bool& done) -> asio::awaitable<void> {
            r = co_await relay(x, y);
            done = true;
        }(a, b, out, ended),
        asio::bind_cancellation_slot(cancel.slot(), asio::detached));
}

asio::awaitable<void> cancel_after(asio::cancellation_signal& cancel, clock::duration delay) {
    co_await sleep(delay);
    cancel.emit(asio::cancellation_type::terminal);
}

TEST(RelayOverTcp, CarriesBothWaysAcrossManyBurstsThenHalfCloses) {
    runner rn;
    tcp_setup s(rn);
    relay_result r;
    constexpr std::size_t up_total = 3 * 1024 * 1024 + 7, down_total = 1024 * 1024 + 3;
    std::size_t up_got = 0, up_bad = 0, down_got = 0, down_bad = 0;
    error_code up_end, down_end;
    rn.spawn(run_tcp_relay(*s.app_inner, *s.up_inner, clock::duration::zero(), r));
    // Up: 48 pauses, so dozens of bursts; down: one bulk write.
    rn.spawn(send_pattern(*s.app_outer, up_total, 64 * 1024 + 1, 2ms, 1));
    rn.spawn(send_pattern(*s.up_outer, down_total, down_total, clock::duration::zero(), 2));
    rn.spawn(check_pattern(*s.up_outer, 1, up_got, up_bad, up_end));
    rn.spawn(check_pattern(*s.app_outer, 2, down_got, down_bad, down_end));
    rn.run(20s);
    EXPECT_EQ(up_got, up_total);
    EXPECT_EQ(up_bad, SIZE_MAX);
    EXPECT_EQ(down_got, down_total);
    EXPECT_EQ(down_bad, SIZE_MAX);
    EXPECT_EQ(up_end, asio::error::eof);
    EXPECT_EQ(down_end, asio::error::eof);
    // Each direction's count is the sum over its bursts.
    EXPECT_EQ(r.a_to_b.bytes, up_total);
    EXPECT_EQ(r.b_to_a.bytes, down_total);
    EXPECT_FALSE(r.a_to_b.ec) << r.a_to_b.ec.message();
    EXPECT_FALSE(r.b_to_a.ec) << r.b_to_a.ec.message();
}

TEST(RelayOverTcp, ResetOfAnIdlePeerEndsBothDirections) {
    runner rn;
    tcp_setup s(rn);
    relay_result r;
    std::size_t got = 0, bad = 0;
    error_code app_end;
    rn.spawn(run_tcp_relay(*s.app_inner, *s.up_inner, clock::duration::zero(), r));
    rn.spawn(check_pattern(*s.app_outer, 0, got, bad, app_end));
    rn.spawn([](tcp_stream& up) -> asio::awaitable<void> {
        co_await sleep(50ms); // both directions are waiting for their sockets by now
        up.socket().set_option(asio::socket_base::linger(true, 0));
        up.close(); // a reset
    }(*s.up_outer));
    rn.run(5s);
    EXPECT_EQ(got, 0u);
    EXPECT_TRUE(app_end); // the relay closed the app's connection
    EXPECT_TRUE(r.b_to_a.ec);
    EXPECT_TRUE(r.a_to_b.ec); // its wait was ended by the close
    EXPECT_FALSE(r.idle);
}

TEST(RelayOverTcp, IdleTimeoutClosesWaitingDirections) {
    runner rn;
    tcp_setup s(rn);
    relay_result r;
    std::size_t got = 0, bad = 0;
    error_code app_end;
    const auto start = clock::now();
    rn.spawn(run_tcp_relay(*s.app_inner, *s.up_inner, 100ms, r));
    rn.spawn(check_pattern(*s.app_outer, 0, got, bad, app_end));
    rn.run(5s);
    EXPECT_TRUE(r.idle);
    EXPECT_TRUE(r.a_to_b.ec);
    EXPECT_TRUE(r.b_to_a.ec);
    EXPECT_EQ(app_end, asio::error::eof);
    EXPECT_LT(clock::now() - start, 100ms + 100ms / 4 + 900ms);
}

TEST(RelayOverTcp, CancellationEndsBothDirectionsMidTraffic) {
    // Cancelled while the up direction runs burst after burst and the down one waits: both
    // end (whichever state each is in, including between a burst and its next wait).
    runner rn;
    tcp_setup s(rn);
    relay_result r;
    bool ended = false;
    asio::cancellation_signal cancel;
    spawn_cancellable_relay(rn, *s.app_inner, *s.up_inner, r, ended, cancel);
    std::size_t up_got = 0, up_bad = 0, down_got = 0, down_bad = 0;
    error_code up_end, down_end;
    rn.spawn([](tcp_stream& app) -> asio::awaitable<void> {
        // Keeps sending in small pieces until the relay closes the connection.
        std::vector<std::uint8_t> buf(4096, 'u');
        for (;;) {
            auto [ec, n] = co_await write_all(app, buf);
            if (ec) {
                co_return;
            }
            co_await sleep(1ms);
        }
    }(*s.app_outer));
    rn.spawn(check_pattern(*s.up_outer, 0, up_got, up_bad, up_end));
    rn.spawn(check_pattern(*s.app_outer, 0, down_got, down_bad, down_end));
    rn.spawn(cancel_after(cancel, 100ms));
    rn.run(5s);
    EXPECT_TRUE(ended);
    EXPECT_GT(r.a_to_b.bytes, 0u);
    EXPECT_TRUE(r.a_to_b.ec);
    EXPECT_TRUE(r.b_to_a.ec);
    EXPECT_TRUE(up_end);   // the relay closed the upstream connection
    EXPECT_TRUE(down_end); // and the app's
}

TEST(RelayOverTcp, CancellationEndsAnIdleRelay) {
    // Both directions wait on their sockets: the cancellation must reach the waits.
    runner rn;
    tcp_setup s(rn);
    relay_result r;
    bool ended = false;
    asio::cancellation_signal cancel;
    spawn_cancellable_relay(rn, *s.app_inner, *s.up_inner, r, ended, cancel);
    rn.spawn(cancel_after(cancel, 50ms));
    rn.run(5s);
    EXPECT_TRUE(ended);
    EXPECT_EQ(r.a_to_b.ec, asio::error::operation_aborted);
    EXPECT_TRUE(r.b_to_a.ec);
}

TEST(RelayOverTcp, ContextDestroyedWhileIdleReleasesEverything) {
    // An idle relay's state is owned by its two socket waits; destroying the io_context
    // destroys them, and with them the relay and the coroutine the streams live in (a leak
    // here fails the sanitizer build).
    bool ended = false;
    {
        runner rn;
        auto [a, b] = tcp_pair(rn.ctx);
        auto [c, d] = tcp_pair(rn.ctx);
        asio::co_spawn(
            rn.ctx,
            [](tcp_stream x, tcp_stream y, bool& done) -> asio::awaitable<void> {
                co_await relay(x, y);
                done = true;
            }(std::move(b), std::move(c), ended),
            asio::detached);
        rn.ctx.run_for(50ms);
        EXPECT_FALSE(rn.ctx.stopped()); // still relaying, nothing to do
    }
    EXPECT_FALSE(ended);
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

#include "kaminari/net/dial.hpp"

#include "support/mem_stream.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>

#include <array>
#include <chrono>

namespace kaminari::net {
namespace {

using tcp = asio::ip::tcp;
constexpr std::chrono::milliseconds limit(5000);

tcp::acceptor listening(asio::io_context& ctx) {
    tcp::acceptor a(ctx, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    a.non_blocking(true);
    return a;
}

// The accepted end of the connection dial_ahead made, without waiting (it must be there).
tcp::socket accepted(tcp::acceptor& a) {
    error_code ec;
    tcp::socket s = a.accept(ec);
    EXPECT_FALSE(ec) << "no connection to accept: " << ec.message();
    return s;
}

// A target on this host is connected within start(), before anything else runs; take() gives
// that socket, connected to the acceptor.
TEST(DialAhead, ATargetOnThisHostIsConnectedWithinStart) {
    asio::io_context ctx;
    auto acceptor = listening(ctx);
    test::run(ctx, [&]() -> asio::awaitable<void> {
        dial_ahead d;
        EXPECT_FALSE(d.started());
        d.start(ctx.get_executor(), {"127.0.0.1", acceptor.local_endpoint().port()}, limit);
        EXPECT_TRUE(d.started());
        tcp::socket there = accepted(acceptor);
        auto [ec, s] = co_await d.take();
        EXPECT_FALSE(d.started());
        EXPECT_FALSE(ec) << ec.message();
        EXPECT_TRUE(s.is_open());
        if (ec || !there.is_open()) {
            co_return;
        }
        EXPECT_EQ(s.write_some(asio::buffer("x", 1)), 1u);
        std::array<char, 4> got{};
        EXPECT_EQ(there.read_some(asio::buffer(got)), 1u);
        EXPECT_EQ(got[0], 'x');
    }());
}

// A name to resolve first (asio's resolver thread): take() waits for the connect under way.
TEST(DialAhead, TakeWaitsForAConnectUnderWay) {
    asio::io_context ctx;
    auto acceptor = listening(ctx);
    test::run(ctx, [&]() -> asio::awaitable<void> {
        dial_ahead d;
        d.start(ctx.get_executor(), {"localhost", acceptor.local_endpoint().port()}, limit);
        error_code not_yet;
        acceptor.accept(not_yet); // the resolver's answer comes back on this thread, later
        EXPECT_EQ(not_yet, asio::error::would_block);
        auto [ec, s] = co_await d.take();
        EXPECT_FALSE(ec) << ec.message();
        EXPECT_TRUE(s.is_open());
        EXPECT_EQ(s.remote_endpoint().port(), acceptor.local_endpoint().port());
    }());
}

// A refused connect is take()'s error, and its socket is closed.
TEST(DialAhead, AFailedConnectIsItsError) {
    asio::io_context ctx;
    std::uint16_t port = 0;
    {
        auto a = listening(ctx);
        port = a.local_endpoint().port();
    }
    test::run(ctx, [&]() -> asio::awaitable<void> {
        dial_ahead d;
        d.start(ctx.get_executor(), {"127.0.0.1", port}, limit);
        auto [ec, s] = co_await d.take();
        EXPECT_EQ(ec, asio::error::connection_refused) << ec.message();
        EXPECT_FALSE(s.is_open());
    }());
}

// Not taken (the handshake failed): the connection it made is closed, the peer reads its end.
TEST(DialAhead, NotTakenItsConnectionIsClosed) {
    asio::io_context ctx;
    auto acceptor = listening(ctx);
    tcp::socket there(ctx);
    test::run(ctx, [&]() -> asio::awaitable<void> {
        {
            dial_ahead d;
            d.start(ctx.get_executor(), {"127.0.0.1", acceptor.local_endpoint().port()}, limit);
            there = accepted(acceptor);
        }
        co_return;
    }());
    ASSERT_TRUE(there.is_open());
    std::array<char, 4> got{};
    error_code ec;
    EXPECT_EQ(there.read_some(asio::buffer(got), ec), 0u);
    EXPECT_EQ(ec, asio::error::eof) << ec.message();
}

} // namespace
} // namespace kaminari::net

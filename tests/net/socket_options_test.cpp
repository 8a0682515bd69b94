#include "kaminari/net/socket_options.hpp"

#include "kaminari/net/dial.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace kaminari::net {
namespace {

using tcp = asio::ip::tcp;

int option(tcp::socket& s, int level, int name) {
    int value = -1;
    socklen_t len = sizeof value;
    EXPECT_EQ(::getsockopt(s.native_handle(), level, name, &value, &len), 0);
    return value;
}

TEST(SocketOptions, LoopbackAddressesAreOnThisHost) {
    for (const char* a : {"127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"}) {
        EXPECT_TRUE(on_this_host(asio::ip::make_address(a))) << a;
    }
    for (const char* a : {"10.0.0.1", "192.0.2.1", "0.0.0.0", "::", "::ffff:192.0.2.1",
                          "2001:db8::1", "::127.0.0.1"}) {
        EXPECT_FALSE(on_this_host(asio::ip::make_address(a))) << a;
    }
}

TEST(SocketOptions, KeepaliveWithItsTimingOrNoneAndNoDelayEither) {
    asio::io_context ctx;
    tcp::socket with(ctx, tcp::v4());
    tune_socket(with);
    EXPECT_EQ(option(with, IPPROTO_TCP, TCP_NODELAY), 1);
    EXPECT_EQ(option(with, SOL_SOCKET, SO_KEEPALIVE), 1);
    EXPECT_EQ(option(with, IPPROTO_TCP, TCP_KEEPIDLE), keepalive_idle_s);
    EXPECT_EQ(option(with, IPPROTO_TCP, TCP_KEEPINTVL), keepalive_interval_s);
    EXPECT_EQ(option(with, IPPROTO_TCP, TCP_KEEPCNT), keepalive_probes);

    tcp::socket without(ctx, tcp::v4());
    tune_socket(without, false);
    EXPECT_EQ(option(without, IPPROTO_TCP, TCP_NODELAY), 1);
    EXPECT_EQ(option(without, SOL_SOCKET, SO_KEEPALIVE), 0);
}

TEST(SocketOptions, ADialedSocketHasKeepaliveUnlessItsRemoteIsOnThisHost) {
    // Only the options: nothing connects (tests reach no address but loopback).
    asio::io_context ctx;
    for (const char* a : {"192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1"}) {
        tcp::socket s(ctx, tcp::v4());
        tune_dialed(s, tcp::endpoint(asio::ip::make_address(a), 443));
        EXPECT_EQ(option(s, SOL_SOCKET, SO_KEEPALIVE), 1) << a;
        EXPECT_EQ(option(s, IPPROTO_TCP, TCP_KEEPIDLE), keepalive_idle_s) << a;
        EXPECT_EQ(option(s, IPPROTO_TCP, TCP_NODELAY), 1) << a;
    }
    for (const char* a : {"127.0.0.1", "::1", "::ffff:127.0.0.1"}) {
        tcp::socket s(ctx, tcp::v4());
        tune_dialed(s, tcp::endpoint(asio::ip::make_address(a), 443));
        EXPECT_EQ(option(s, SOL_SOCKET, SO_KEEPALIVE), 0) << a;
        EXPECT_EQ(option(s, IPPROTO_TCP, TCP_NODELAY), 1) << a;
    }
}

TEST(SocketOptions, ASocketDialedToThisHostHasNoDelayAndNoKeepalive) {
    asio::io_context ctx;
    tcp::acceptor acceptor(ctx, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const endpoint remote{"127.0.0.1", acceptor.local_endpoint().port()};
    bool connected = false;
    asio::co_spawn(
        ctx,
        [&]() -> asio::awaitable<void> {
            auto [ec, s] = co_await connect_remote(remote, std::chrono::seconds(5));
            EXPECT_FALSE(ec) << ec.message();
            if (!ec) {
                connected = true;
                EXPECT_EQ(option(s, IPPROTO_TCP, TCP_NODELAY), 1);
                EXPECT_EQ(option(s, SOL_SOCKET, SO_KEEPALIVE), 0);
            }
        },
        [](std::exception_ptr e) {
            if (e) {
                std::rethrow_exception(e);
            }
        });
    ctx.run_for(std::chrono::seconds(5));
    EXPECT_TRUE(connected);
}

} // namespace
} // namespace kaminari::net

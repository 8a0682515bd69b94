#include "kaminari/net/dial.hpp"

#include <kaminari/net/socket_options.hpp>
#include <kaminari/net/timeout.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/this_coro.hpp>

#include <string>

namespace kaminari::net {

namespace {

asio::awaitable<std::pair<error_code, asio::ip::tcp::socket>> connect_any(endpoint remote) {
    using tcp = asio::ip::tcp;
    auto exec = co_await asio::this_coro::executor;
    tcp::socket socket(exec);
    error_code ec;
    const auto literal = asio::ip::make_address(remote.host, ec);
    if (!ec) {
        // An address literal needs no resolver thread.
        auto [cec] = co_await socket.async_connect(tcp::endpoint(literal, remote.port), use_tuple);
        co_return std::pair{cec, std::move(socket)};
    }
    tcp::resolver resolver(exec);
    auto [rec, results] = co_await resolver.async_resolve(
        remote.host, std::to_string(remote.port), tcp::resolver::numeric_service, use_tuple);
    if (rec) {
        co_return std::pair{rec, std::move(socket)};
    }
    auto [cec, ep] = co_await asio::async_connect(socket, results, use_tuple);
    (void)ep;
    co_return std::pair{cec, std::move(socket)};
}

} // namespace

asio::awaitable<std::pair<error_code, asio::ip::tcp::socket>>
connect_remote(endpoint remote, std::chrono::milliseconds limit) {
    auto result = co_await with_timeout(connect_any(std::move(remote)), limit);
    if (!result) {
        co_return std::pair{error_code(asio::error::timed_out),
                            asio::ip::tcp::socket(co_await asio::this_coro::executor)};
    }
    if (!result->first) {
        tune_socket(result->second);
    }
    co_return std::move(*result);
}

} // namespace kaminari::net

#pragma once

// Deadlines for single steps (connect, handshakes): the step runs beside a timer; whichever
// finishes first cancels the other.

#include <kaminari/net/stream.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <chrono>
#include <optional>
#include <variant>

namespace kaminari::net {

/// Runs `step`; if it has not finished after `limit`, cancels it and returns std::nullopt.
/// The step must react to cancellation (every Asio socket operation does).
template <class T>
asio::awaitable<std::optional<T>> with_timeout(asio::awaitable<T> step,
                                               std::chrono::steady_clock::duration limit) {
    using namespace asio::experimental::awaitable_operators;
    asio::steady_timer timer(co_await asio::this_coro::executor, limit);
    auto which = co_await (std::move(step) || timer.async_wait(use_tuple));
    if (which.index() == 0) {
        co_return std::optional<T>(std::move(std::get<0>(which)));
    }
    co_return std::nullopt;
}

} // namespace kaminari::net

#include "kaminari/net/hand_over.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <thread>

namespace kaminari::net {
namespace {

using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

// Reads from `app` until the end of the stream, an error or 5 s: the error (eof when the other
// side closed it), or timed_out.
boost::system::error_code read_to_end(tcp::socket& app) {
    app.non_blocking(true);
    const auto until = std::chrono::steady_clock::now() + 5s;
    std::array<char, 64> buf{};
    while (std::chrono::steady_clock::now() < until) {
        boost::system::error_code ec;
        app.read_some(asio::buffer(buf), ec);
        if (ec && ec != asio::error::would_block) {
            return ec;
        }
        std::this_thread::sleep_for(1ms);
    }
    return asio::error::timed_out;
}

// Two workers: `here` runs on the test's thread, `there` on a thread of its own. An app
// connection accepted on `here` is handed over and served (an echo of 4 bytes) on `there`.
struct two_workers {
    asio::io_context here;
    asio::io_context there;
    asio::executor_work_guard<asio::io_context::executor_type> keep{there.get_executor()};
    std::thread thread{[this] { there.run(); }};
    tcp::acceptor acceptor{here, {asio::ip::make_address("127.0.0.1"), 0}};

    ~two_workers() {
        keep.reset();
        there.stop();
        thread.join();
    }

    tcp::socket accept_one(tcp::socket& app) {
        app.connect(acceptor.local_endpoint());
        return acceptor.accept();
    }

    // Hands `socket` over to `there` with `run`, and runs `here` until the caller resumes (at
    // most 5 s); whether it did. `moved`: what hand_over returned.
    bool hand_over_from_here(tcp::socket& socket, handed_connection run, std::uint64_t id,
                             bool& moved) {
        bool resumed = false;
        asio::co_spawn(
            here,
            [&]() -> asio::awaitable<void> {
                moved = co_await hand_over(socket, there, std::move(run), id);
                resumed = true;
            },
            asio::detached);
        const auto until = std::chrono::steady_clock::now() + 5s;
        while (!resumed && std::chrono::steady_clock::now() < until) {
            here.run_one_for(10ms);
        }
        return resumed;
    }
};

TEST(HandOver, TheConnectionRunsOnTheOtherWorkerAndTheCallerWaitsForItsEnd) {
    two_workers w;
    tcp::socket app(w.here);
    tcp::socket accepted = w.accept_one(app);

    std::atomic<bool> ran_there{false};
    std::atomic<bool> finished_there{false};
    bool moved = false;
    bool caller_done = false;
    bool ended_first = false;
    asio::co_spawn(
        w.here,
        [&]() -> asio::awaitable<void> {
            moved = co_await hand_over(
                accepted, w.there,
                [&](tcp::socket s) -> asio::awaitable<void> {
                    ran_there = w.there.get_executor().running_in_this_thread();
                    std::array<char, 4> buf{};
                    co_await asio::async_read(s, asio::buffer(buf), asio::use_awaitable);
                    co_await asio::async_write(s, asio::buffer(buf), asio::use_awaitable);
                    finished_there = true;
                },
                7);
            ended_first = finished_there.load();
            caller_done = true;
        },
        asio::detached);

    asio::write(app, asio::buffer("ping", 4));
    std::array<char, 4> echo{};
    // The test's thread runs `here` until the echo is back and the caller has resumed.
    const auto until = std::chrono::steady_clock::now() + 5s;
    app.non_blocking(true);
    std::size_t got = 0;
    while (!caller_done && std::chrono::steady_clock::now() < until) {
        w.here.run_one_for(10ms);
        boost::system::error_code ec;
        got += app.read_some(asio::buffer(echo.data() + got, echo.size() - got), ec);
    }
    EXPECT_TRUE(moved);
    EXPECT_TRUE(ran_there) << "the connection did not run on the other worker's thread";
    EXPECT_EQ(std::string(echo.data(), got), "ping");
    ASSERT_TRUE(caller_done);
    EXPECT_TRUE(ended_first) << "the caller resumed before the connection ended";
}

TEST(HandOver, AnExceptionThereEndsOnlyThatConnection) {
    two_workers w;
    tcp::socket app(w.here);
    tcp::socket accepted = w.accept_one(app);
    bool moved = false;
    EXPECT_TRUE(w.hand_over_from_here(
        accepted,
        [](tcp::socket) -> asio::awaitable<void> {
            throw std::runtime_error("boom");
            co_return;
        },
        8, moved));
    EXPECT_TRUE(moved);
    // The other worker still runs: it serves the next handed connection.
    std::promise<void> served;
    asio::post(w.there, [&] { served.set_value(); });
    EXPECT_EQ(served.get_future().wait_for(5s), std::future_status::ready);
}

// `run` throws before it makes a coroutine (as a bad_alloc would): the descriptor is closed
// there, not leaked (the app reads the end of the stream), and the caller resumes.
TEST(HandOver, AConnectionThatCannotStartThereIsClosedAndTheCallerResumes) {
    two_workers w;
    tcp::socket app(w.here);
    tcp::socket accepted = w.accept_one(app);
    bool moved = false;
    ASSERT_TRUE(w.hand_over_from_here(
        accepted, [](tcp::socket) -> asio::awaitable<void> { throw std::bad_alloc(); }, 10, moved));
    EXPECT_TRUE(moved);
    EXPECT_FALSE(accepted.is_open()) << "the descriptor stayed with the caller's socket";
    const auto ec = read_to_end(app);
    EXPECT_EQ(ec, asio::error::eof) << "the app's connection was not closed: " << ec.message();
}

// The other worker goes (kaminaric stopping) before it ran the hand-over: the descriptor is
// closed with what was posted, not leaked, and `run` never runs.
TEST(HandOver, ADescriptorPostedToAWorkerThatGoesIsClosed) {
    asio::io_context here;
    auto there = std::make_unique<asio::io_context>();
    tcp::acceptor acceptor{here, {asio::ip::make_address("127.0.0.1"), 0}};
    tcp::socket app(here);
    app.connect(acceptor.local_endpoint());
    tcp::socket accepted = acceptor.accept();
    bool ran = false;
    asio::co_spawn(
        here,
        [&]() -> asio::awaitable<void> {
            co_await hand_over(
                accepted, *there,
                [&](tcp::socket) -> asio::awaitable<void> {
                    ran = true;
                    co_return;
                },
                12);
        },
        asio::detached);
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (accepted.is_open() && std::chrono::steady_clock::now() < until) {
        here.run_one_for(10ms);
    }
    ASSERT_FALSE(accepted.is_open()) << "the hand-over was not posted";
    there.reset(); // never ran: destroys what was posted
    const auto ec = read_to_end(app);
    EXPECT_EQ(ec, asio::error::eof) << "the app's connection was not closed: " << ec.message();
    EXPECT_FALSE(ran);
}

TEST(HandOver, AClosedSocketIsNotMoved) {
    two_workers w;
    tcp::socket closed(w.here);
    bool moved = true;
    bool ran = false;
    EXPECT_TRUE(w.hand_over_from_here(
        closed,
        [&](tcp::socket) -> asio::awaitable<void> {
            ran = true;
            co_return;
        },
        9, moved));
    EXPECT_FALSE(moved);
    EXPECT_FALSE(ran);
}

} // namespace
} // namespace kaminari::net

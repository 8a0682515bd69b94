#include "kaminari/net/timeout.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <thread>

namespace kaminari::net {
namespace {

using namespace std::chrono_literals;

TEST(Deadline, RunsItsActionWhenItPasses) {
    asio::io_context ctx;
    int fired = 0;
    deadline d(ctx.get_executor(), 10ms, [&] { ++fired; });
    EXPECT_FALSE(d.expired());
    ctx.run_for(200ms);
    EXPECT_EQ(fired, 1);
    EXPECT_TRUE(d.expired());
}

TEST(Deadline, GoneBeforeItPassesNeverRuns) {
    asio::io_context ctx;
    int fired = 0;
    {
        deadline d(ctx.get_executor(), 10ms, [&] { ++fired; });
    }
    ctx.run_for(100ms);
    EXPECT_EQ(fired, 0);
}

// The timer fired, but its handler had not run yet when the deadline went away (the step it
// guarded completed in the same turn): the action must not run, since what it acts on may be
// gone too.
TEST(Deadline, GoneAfterTheTimerFiredButBeforeItsHandlerRanNeverRuns) {
    asio::io_context ctx;
    int fired = 0;
    std::optional<deadline> d;
    d.emplace(ctx.get_executor(), 1ms, [&] { ++fired; });
    std::this_thread::sleep_for(20ms);
    // Queued behind the reactor: when the reactor runs it finds the expired timer and queues the
    // timer's handler behind this one, which destroys the deadline first.
    asio::post(ctx, [&] { d.reset(); });
    ctx.run_for(50ms);
    EXPECT_EQ(fired, 0);
}

} // namespace
} // namespace kaminari::net

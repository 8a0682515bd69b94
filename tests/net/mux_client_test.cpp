#include "kaminari/net/mux_client.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace kaminari::net {
namespace {

// Links as choose_mux_link() sees them.
mux_link_view open_with_room(std::size_t sessions) {
    return {true, true, true, sessions};
}
mux_link_view open_full(std::size_t sessions) { // at n, under the burst limit
    return {true, false, true, sessions};
}
mux_link_view open_at_burst_limit(std::size_t sessions) {
    return {true, false, false, sessions};
}
mux_link_view opening_with_room() {
    return {false, true, true, 0};
}
mux_link_view opening_full() {
    return {false, false, false, 0};
}

mux_choice choose(const std::vector<mux_link_view>& links) {
    return choose_mux_link(links, [](const mux_link_view& v) { return v; });
}

TEST(MuxChoice, NoLinkMeansOpenOneAndWait) {
    const auto c = choose({});
    EXPECT_EQ(c.index, mux_choice::none);
    EXPECT_FALSE(c.open_ahead);
}

TEST(MuxChoice, TheFirstOpenLinkWithRoomComesFirst) {
    // Before busy ones, before one being opened, and whatever its session count.
    const auto c =
        choose({open_full(8), opening_with_room(), open_with_room(7), open_with_room(1)});
    EXPECT_EQ(c.index, 2U);
    EXPECT_FALSE(c.open_ahead);
}

// A burst that finds every open link at n rides the least busy one, and one link starts
// opening for the sessions after it.
TEST(MuxChoice, ABurstRidesTheLeastBusyOpenLinkWhileAnotherOpens) {
    const auto c = choose({open_full(10), open_full(9), open_at_burst_limit(2), open_full(12)});
    EXPECT_EQ(c.index, 1U);
    EXPECT_TRUE(c.open_ahead);
}

// One being opened already, with room: the burst still rides the open link (no waiting for the
// cold one), and no second link opens ahead.
TEST(MuxChoice, OneLinkOpensAheadAtATime) {
    const auto c = choose({open_full(9), opening_with_room()});
    EXPECT_EQ(c.index, 0U);
    EXPECT_FALSE(c.open_ahead);
    // A link being opened that is itself full does not count as one opening for the burst.
    const auto d = choose({opening_full(), open_full(9)});
    EXPECT_EQ(d.index, 1U);
    EXPECT_TRUE(d.open_ahead);
}

// Every open link at the burst limit: wait for one being opened with room, else open one.
TEST(MuxChoice, PastTheBurstLimitWaitForALinkBeingOpened) {
    const auto c = choose({open_at_burst_limit(16), opening_full(), opening_with_room()});
    EXPECT_EQ(c.index, 2U);
    EXPECT_FALSE(c.open_ahead);
    const auto d = choose({open_at_burst_limit(16), opening_full()});
    EXPECT_EQ(d.index, mux_choice::none);
    EXPECT_FALSE(d.open_ahead);
}

} // namespace
} // namespace kaminari::net

#include "kaminari/tls/hello_ahead.hpp"

#include "tls/pump.hpp"
#include "tls/self_signed_pair.hpp"

#include <kaminari/log.hpp>

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <limits>
#include <string>
#include <thread>

namespace kaminari::tls {
namespace {

using test::pump_handshake;

tls_client_options client_opts(bool early_data = false) {
    tls_client_options o = test::insecure_client_options("test.example");
    o.early_data = early_data;
    return o;
}

tls_server_options server_opts() {
    return test::self_signed_server_options("test.example");
}

class HelloAhead : public ::testing::Test {
protected:
    static void SetUpTestSuite() { log::set_level(log::level::error); } // `insecure`'s warning

    // The first bytes of `e`'s pending output: a handshake record holding a ClientHello.
    static bool holds_client_hello(const engine& e) {
        const auto out = e.output();
        return out.size() > 5 && out[0] == 0x16 && out[5] == 0x01;
    }

    // Completes `c`'s handshake with a new server engine and exchanges a few bytes, which
    // delivers the server's tickets into the client's cache. Returns whether it resumed.
    bool connect(engine& c) {
        engine s = sctx.make_engine();
        const auto r = pump_handshake(c, s);
        EXPECT_FALSE(r.client) << r.client.message();
        EXPECT_FALSE(r.server) << r.server.message();
        EXPECT_EQ(test::send(c, s, "ping"), "ping");
        EXPECT_EQ(test::send(s, c, "pong"), "pong");
        return c.session_reused();
    }

    server_context sctx{server_opts()};
    client_context cctx{client_opts()};
};

TEST_F(HelloAhead, AMadeEngineHoldsItsClientHelloAndCompletesTheHandshake) {
    hello_ahead ahead(cctx);
    EXPECT_FALSE(ahead.ready());
    ahead.make();
    ASSERT_TRUE(ahead.ready());
    ahead.make(); // one is waiting: nothing more is made
    engine c = ahead.take();
    EXPECT_FALSE(ahead.ready());
    EXPECT_TRUE(holds_client_hello(c));
    EXPECT_FALSE(connect(c)); // no session was cached: a full handshake
}

TEST_F(HelloAhead, WithNoneWaitingTakeMakesAnEngineAsTheContextDoes) {
    hello_ahead ahead(cctx);
    engine c = ahead.take();
    EXPECT_EQ(c.pending_output(), 0u); // its handshake has not started
    EXPECT_FALSE(connect(c));
}

TEST_F(HelloAhead, ResumesTheSessionCachedWhenItWasMade) {
    hello_ahead ahead(cctx);
    engine first = ahead.take();
    ASSERT_FALSE(connect(first));
    const std::size_t cached = cctx.sessions().size();
    ASSERT_GT(cached, 0u);
    ahead.make();
    EXPECT_EQ(cctx.sessions().size(), cached - 1); // its ticket is taken when it is made
    engine c = ahead.take();
    EXPECT_TRUE(holds_client_hello(c));
    EXPECT_TRUE(connect(c));
}

TEST_F(HelloAhead, OneMadeBeforeAnyTicketIsMadeAgainOnceTwoAreCached) {
    hello_ahead ahead(cctx);
    ahead.make(); // the cache is empty: this one could only make a full handshake
    ASSERT_TRUE(ahead.ready());
    engine other = cctx.make_engine();
    ASSERT_FALSE(connect(other)); // another connection's full handshake brings two tickets
    ASSERT_EQ(cctx.sessions().size(), 2u);
    EXPECT_EQ(cctx.sessions().usable(), 2u);
    EXPECT_FALSE(ahead.ready());
    engine c = ahead.take();
    EXPECT_EQ(c.pending_output(), 0u); // a new engine, made now with a cached session
    EXPECT_TRUE(connect(c));
}

TEST_F(HelloAhead, OneMadeBeforeAnyTicketIsKeptWhileOnlyOneIsCached) {
    hello_ahead ahead(cctx);
    ahead.make();
    engine other = cctx.make_engine();
    ASSERT_FALSE(connect(other));
    ASSERT_TRUE(cctx.sessions().take()); // one of its two tickets used elsewhere
    EXPECT_TRUE(ahead.ready());
    engine c = ahead.take();
    EXPECT_TRUE(holds_client_hello(c));
    EXPECT_FALSE(connect(c)); // a full handshake, which brings two: one to spare
    EXPECT_EQ(cctx.sessions().size(), 3u);
}

// Two workers taking turns, each connection's next engine made before its own ticket comes
// (as kaminaric does it: while the connection waits for the server's reply). After the first
// few, every connection resumes on an engine made ahead. Had a sessionless engine been made
// again whenever one ticket was cached, one worker would make its engines twice, with no
// session for the one made ahead, for good.
TEST_F(HelloAhead, WorkersTakingTurnsSettleOnResumedEnginesMadeAhead) {
    hello_ahead workers[2] = {hello_ahead(cctx), hello_ahead(cctx)};
    workers[0].make();
    workers[1].make();
    std::string seen;
    for (int i = 0; i < 16; ++i) {
        hello_ahead& w = workers[i % 2];
        bool made_ahead = false;
        engine c = w.take(&made_ahead);
        w.make();
        const bool resumed = connect(c);
        seen += made_ahead ? (resumed ? 'R' : 'F') : (resumed ? 'r' : 'f');
    }
    EXPECT_EQ(seen.substr(8), std::string(8, 'R')) << seen;
}

TEST_F(HelloAhead, OneThatWaitedTooLongIsMadeAgainWithTheNewestTicket) {
    hello_ahead ahead(cctx, std::chrono::milliseconds(1));
    engine first = cctx.make_engine();
    ASSERT_FALSE(connect(first));
    ahead.make(); // takes one of the two tickets
    ASSERT_EQ(cctx.sessions().size(), 1u);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_FALSE(ahead.ready());
    bool made_ahead = true;
    engine c = ahead.take(&made_ahead);
    EXPECT_FALSE(made_ahead);
    EXPECT_EQ(c.pending_output(), 0u);
    EXPECT_TRUE(connect(c)); // with the other ticket
    EXPECT_FALSE(ahead.ready());
}

// A TLS 1.2 session stays in the cache for further connections, so it counts as plenty: an
// engine made before it was cached is made again, and every later one resumes with it.
TEST_F(HelloAhead, WithATls12ServerEngineAfterEngineResumes) {
    ASSERT_EQ(SSL_CTX_set_max_proto_version(sctx.native_handle(), TLS1_2_VERSION), 1);
    hello_ahead ahead(cctx);
    ahead.make();
    engine first = cctx.make_engine();
    ASSERT_FALSE(connect(first));
    EXPECT_EQ(cctx.sessions().usable(), std::numeric_limits<std::size_t>::max());
    EXPECT_FALSE(ahead.ready()); // made with no session, and one is cached now
    std::string seen;
    for (int i = 0; i < 4; ++i) {
        bool made_ahead = false;
        engine c = ahead.take(&made_ahead);
        ahead.make();
        seen += made_ahead ? (connect(c) ? 'R' : 'F') : (connect(c) ? 'r' : 'f');
    }
    EXPECT_EQ(seen, "rRRR");
}

TEST_F(HelloAhead, NothingIsMadeAheadWithEarlyData) {
    client_context zero_rtt(client_opts(true));
    hello_ahead ahead(zero_rtt);
    ahead.make();
    EXPECT_FALSE(ahead.ready());
    engine first = ahead.take();
    ASSERT_FALSE(connect(first));
    engine c = ahead.take(); // resumable with early data, its ClientHello not yet made
    EXPECT_EQ(c.pending_output(), 0u);
    EXPECT_GT(c.early_data_limit(), 0u);
}

} // namespace
} // namespace kaminari::tls

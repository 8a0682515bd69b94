#include "kaminari/net/ws_error.hpp"

#include <boost/asio/error.hpp>
#include <gtest/gtest.h>

#include <string>

namespace kaminari::net {
namespace {

using error_code = boost::system::error_code;

TEST(WsError, MessagesAndConditions) {
    for (int v = static_cast<int>(codec::errc::reserved_bits);
         v <= static_cast<int>(codec::errc::bad_protocol); ++v) {
        const error_code ec(v, ws_category());
        const std::string m = ec.message();
        EXPECT_FALSE(m.empty());
        EXPECT_EQ(m.back(), '.') << m;
        EXPECT_NE(m.find("Unknown"), 0u) << v;
        const bool proto = ec == ws_condition::protocol_violation;
        const bool hs = ec == ws_condition::handshake_failed;
        EXPECT_FALSE(proto && hs);
        if (static_cast<codec::errc>(v) != codec::errc::closed) {
            EXPECT_TRUE(proto || hs) << m;
        }
    }
    EXPECT_STREQ(ws_category().name(), "kaminari.ws");
    const error_code closed = codec::errc::closed;
    EXPECT_NE(closed, ws_condition::protocol_violation);
    EXPECT_EQ(error_code(codec::errc::wrong_host), ws_condition::handshake_failed);
    EXPECT_EQ(error_code(codec::errc::bad_opcode), ws_condition::protocol_violation);
    EXPECT_NE(error_code(boost::asio::error::eof), ws_condition::protocol_violation);
}

} // namespace
} // namespace kaminari::net

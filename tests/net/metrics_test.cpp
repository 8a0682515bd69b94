#include "kaminari/net/metrics.hpp"

#include <gtest/gtest.h>

#include <string>

namespace kaminari::net::metrics {
namespace {

// The pool's series are kaminaric's alone (kaminaris has no pool), with the labels every
// series carries; counts added on this thread show in the next rendering.
TEST(Metrics, PoolSeriesAreTheClients) {
    const std::string before = render("kaminaric", "ws", 0);
    add(pool_dialed, 3);
    const std::string client = render("kaminaric", "ws", 0);
    const std::string server = render("kaminaris", "ws", 0);
    EXPECT_EQ(server.find("kaminari_pool_"), std::string::npos) << server;
    EXPECT_NE(client.find("# TYPE kaminari_pool_takes_total counter\n"), std::string::npos);
    EXPECT_NE(client.find("kaminari_pool_takes_total{program=\"kaminaric\",transport=\"ws\","
                          "result=\"warm\"}"),
              std::string::npos)
        << client;
    EXPECT_NE(client.find("kaminari_pool_handed_over_total{program=\"kaminaric\",transport="
                          "\"ws\"}"),
              std::string::npos)
        << client;
    const auto dialed = [](const std::string& text) {
        const std::string key =
            "kaminari_pool_takes_total{program=\"kaminaric\",transport=\"ws\",result=\"dialed\"} ";
        const auto at = text.find(key);
        return at == std::string::npos ? -1 : std::stoll(text.substr(at + key.size()));
    };
    ASSERT_GE(dialed(before), 0) << before;
    EXPECT_EQ(dialed(client) - dialed(before), 3);
    // The families the server shows are still there for it.
    EXPECT_NE(server.find("kaminari_bytes_total{program=\"kaminaris\""), std::string::npos);
}

} // namespace
} // namespace kaminari::net::metrics

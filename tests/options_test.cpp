#include "kaminari/options.hpp"

#include <kaminari/error.hpp>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace kaminari {
namespace {

using codec::mask_mode;

std::string client_error(std::string_view text) {
    try {
        parse_client_options(text);
    } catch (const config_error& e) {
        return e.what();
    }
    return "(no error)";
}

std::string server_error(std::string_view text) {
    try {
        parse_server_options(text);
    } catch (const config_error& e) {
        return e.what();
    }
    return "(no error)";
}

TEST(SplitOptions, UndoesEveryEscape) {
    struct row {
        std::string_view text;
        std::vector<std::pair<std::string, std::string>> items; // value "<flag>" for a flag
    };
    const std::vector<row> rows{
        {"", {}},
        {";;", {}},
        {"ws", {{"ws", "<flag>"}}},
        {"path=/a\\;b", {{"path", "/a;b"}}},
        {"path=/a\\=b", {{"path", "/a=b"}}},
        {"path=/a\\\\b", {{"path", "/a\\b"}}},
        {"path=/a\\\\;ws", {{"path", "/a\\"}, {"ws", "<flag>"}}},
        {"path=a=b", {{"path", "a=b"}}},
        {"k\\=x=v", {{"k=x", "v"}}},
        {"  ws ; host = a ;", {{"ws", "<flag>"}, {"host", "a"}}},
        {"path=\\ a\\ ", {{"path", " a "}}},
        {"host=", {{"host", ""}}},
        {"tls;sni=example.com;alpn=h2,http/1.1",
         {{"tls", "<flag>"}, {"sni", "example.com"}, {"alpn", "h2,http/1.1"}}},
    };
    for (const auto& r : rows) {
        SCOPED_TRACE(r.text);
        const auto items = split_options(r.text);
        ASSERT_EQ(items.size(), r.items.size());
        for (std::size_t i = 0; i < items.size(); ++i) {
            EXPECT_EQ(items[i].key, r.items[i].first);
            EXPECT_EQ(items[i].value.value_or("<flag>"), r.items[i].second);
        }
    }
}

TEST(SplitOptions, RejectsMalformedInput) {
    EXPECT_THROW(split_options("path=/a\\"), config_error);
    EXPECT_THROW(split_options("=x"), config_error);
    EXPECT_THROW(split_options("ws;=x"), config_error);
}

TEST(ClientOptions, UpstreamExamples) {
    auto plain = parse_client_options("");
    EXPECT_FALSE(plain.ws);
    EXPECT_FALSE(plain.tls);
    EXPECT_EQ(describe(plain), "tcp");

    auto ws = parse_client_options("ws;host=example.com;path=/ws");
    ASSERT_TRUE(ws.ws);
    EXPECT_EQ(ws.ws->host, "example.com");
    EXPECT_EQ(ws.ws->path, "/ws");
    EXPECT_EQ(ws.ws->mask, mask_mode::skip);
    EXPECT_FALSE(ws.tls);

    auto wss = parse_client_options("ws;host=example.com;path=/ws;tls;sni=example.com");
    ASSERT_TRUE(wss.ws);
    ASSERT_TRUE(wss.tls);
    EXPECT_EQ(wss.tls->sni, "example.com");
    EXPECT_FALSE(wss.tls->insecure);
    EXPECT_FALSE(wss.tls->early_data);
    EXPECT_EQ(describe(wss), "ws(host=example.com, path=/ws, mask=skip) over tls(sni=example.com)");

    auto tls = parse_client_options("tls;sni=a.example;alpn=h2,http/1.1;0rtt;insecure");
    ASSERT_TRUE(tls.tls);
    EXPECT_EQ(tls.tls->alpn, (std::vector<std::string>{"h2", "http/1.1"}));
    EXPECT_TRUE(tls.tls->early_data);
    EXPECT_TRUE(tls.tls->insecure);
    EXPECT_TRUE(tls.warnings.empty());
}

TEST(ClientOptions, MaskModes) {
    const std::vector<std::pair<std::string_view, mask_mode>> rows{
        {"skip", mask_mode::skip},
        {"skipped", mask_mode::skip},
        {"fixed", mask_mode::fixed},
        {"standard", mask_mode::standard}};
    for (const auto& [name, mode] : rows) {
        auto o = parse_client_options(fmt::format("ws;host=a;path=/;mask={}", name));
        EXPECT_EQ(o.ws->mask, mode) << name;
    }
    EXPECT_EQ(client_error("ws;host=a;path=/;mask=random"),
              "mask: unknown mode 'random'; expected 'skip', 'fixed' or 'standard'");
}

TEST(ClientOptions, EarlyData) {
    EXPECT_EQ(parse_client_options("ws;host=a;path=/").ws->early_data, 0u);
    for (const auto& [text, n] : std::vector<std::pair<std::string_view, std::size_t>>{
             {"ed=0", 0}, {"ed=1", 1}, {"ed=2048", 2048}, {"ed=100;ed=7", 7}}) {
        const auto o = parse_client_options(fmt::format("ws;host=a;path=/;{}", text));
        EXPECT_EQ(o.ws->early_data, n) << text;
        EXPECT_TRUE(o.warnings.empty()) << text;
    }
    EXPECT_EQ(describe(parse_client_options("ws;host=a;path=/;ed=2048")),
              "ws(host=a, path=/, mask=skip, ed=2048)");
    EXPECT_EQ(describe(parse_client_options("ws;host=a;path=/;ed=0")),
              "ws(host=a, path=/, mask=skip)");
    for (std::string_view bad : {"2049", "-1", "1k", "0x10", "99999999999999999999999"}) {
        EXPECT_EQ(client_error(fmt::format("ws;host=a;path=/;ed={}", bad)),
                  fmt::format("ed: '{}' is not an early data size; expected 0 (off) to 2048 "
                              "bytes, e.g. 'ed=2048'",
                              bad))
            << bad;
    }
    EXPECT_EQ(client_error("ws;host=a;path=/;ed"), "ed: missing value; expected 'ed=<value>'");
    const auto no_ws = parse_client_options("ed=2048");
    ASSERT_EQ(no_ws.warnings.size(), 1u);
    EXPECT_EQ(no_ws.warnings[0], "ignoring 'ed': it has no effect without 'ws'");
    const auto server = parse_server_options("ws;host=a;path=/;ed=2048");
    ASSERT_EQ(server.warnings.size(), 1u);
    EXPECT_EQ(server.warnings[0], "ignoring 'ed': it is a client option");
}

TEST(ClientOptions, PluginDefaultsTurnEarlyDataOnForWs) {
    // As a shadowsocks plugin the app always speaks first: ws gets ed=2048 unless told.
    auto ws = parse_client_options("ws;host=a;path=/");
    EXPECT_TRUE(apply_plugin_defaults(ws));
    EXPECT_EQ(ws.ws->early_data, max_ws_early_data);
    EXPECT_EQ(describe(ws), "ws(host=a, path=/, mask=skip, ed=2048)");
    auto wss = parse_client_options("ws;host=a;path=/;tls;sni=a");
    EXPECT_TRUE(apply_plugin_defaults(wss));
    EXPECT_EQ(wss.ws->early_data, max_ws_early_data);
    // What the user said stays: ed=0 is off, ed=<n> is n.
    for (const auto& [text, n] : std::vector<std::pair<std::string_view, std::size_t>>{
             {"ed=0", 0}, {"ed=100", 100}, {"ed=2048", 2048}}) {
        auto o = parse_client_options(fmt::format("ws;host=a;path=/;{}", text));
        EXPECT_FALSE(apply_plugin_defaults(o)) << text;
        EXPECT_EQ(o.ws->early_data, n) << text;
    }
    // mux: a websocket is not one app's; tcp and tls: no websocket.
    for (std::string_view text : {"ws;host=a;path=/;mux=8", "tls;sni=a", "", "tls;sni=a;mux=8"}) {
        auto o = parse_client_options(text);
        EXPECT_FALSE(apply_plugin_defaults(o)) << text;
        EXPECT_TRUE(!o.ws || o.ws->early_data == 0) << text;
    }
}

TEST(ClientOptions, EscapedPathAndLastKeyWins) {
    auto o = parse_client_options("ws;host=a;path=/a\\;b");
    EXPECT_EQ(o.ws->path, "/a;b");
    auto last = parse_client_options("ws;host=a;host=b;path=/x;path=/y");
    EXPECT_EQ(last.ws->host, "b");
    EXPECT_EQ(last.ws->path, "/y");
}

TEST(ClientOptions, SniDefaultsToWsHost) {
    auto o = parse_client_options("ws;host=cdn.example;path=/ws;tls");
    EXPECT_EQ(o.tls->sni, "cdn.example");
}

TEST(ClientOptions, BadInputNamesTheOption) {
    const std::vector<std::pair<std::string_view, std::string_view>> rows{
        {"ws;host=a", "ws: missing 'path=<path>'"},
        {"ws;path=/", "ws: missing 'host=<host>'"},
        {"ws;host=;path=/", "host: empty value; expected 'host=<value>'"},
        {"ws;host;path=/", "host: missing value; expected 'host=<value>'"},
        {"ws=1;host=a;path=/", "ws: is a flag and takes no value; expected 'ws'"},
        {"ws;host=a;path=ws", "path: 'ws' must start with '/'; expected e.g. '/ws'"},
        {"tls", "tls: missing 'sni=<name>'"},
        {"tls;sni=a;alpn=h2,,x", "alpn: 'h2,,x' has an empty or over-long protocol; expected "
                                 "e.g. 'h2,http/1.1'"},
        {"threads=0", "threads: '0' is not a thread count; expected 1 to 256"},
        {"loglevel=loud",
         "loglevel: unknown level 'loud'; expected 'error', 'warn', 'info' or 'debug'"},
        {"handshake_timeout=-1", "handshake_timeout: '-1' is not a duration; expected seconds "
                                 "between 0 and 86400, e.g. 'handshake_timeout=10'"},
        {"idle_timeout=0", "idle_timeout: '0' is not a duration; expected seconds between 0 "
                           "and 86400, e.g. 'idle_timeout=10'"},
        {"idle_timeout=5m", "idle_timeout: '5m' is not a duration; expected seconds between 0 "
                            "and 86400, e.g. 'idle_timeout=10'"},
        {"max_conns=0", "max_conns: '0' is not a connection count; expected 1 to 10000000"},
        {"max_conns=-1", "max_conns: '-1' is not a connection count; expected 1 to 10000000"},
        {"max_conns=1e3", "max_conns: '1e3' is not a connection count; expected 1 to 10000000"},
        {"max_conns=10000001",
         "max_conns: '10000001' is not a connection count; expected 1 to 10000000"},
    };
    for (const auto& [text, message] : rows) {
        EXPECT_EQ(client_error(text), message) << text;
    }
}

TEST(ClientOptions, KeysMatchExactlyAndTyposWarn) {
    // The original matches keys by prefix; `hostname=` must not be read as `host=`.
    EXPECT_EQ(client_error("ws;hostname=a;path=/"), "ws: missing 'host=<host>'");
    auto o = parse_client_options("ws;host=a;path=/;hostname=b;ocsp=x.der");
    EXPECT_EQ(o.ws->host, "a");
    ASSERT_EQ(o.warnings.size(), 2u);
    EXPECT_EQ(o.warnings[0], "ignoring unknown option 'hostname'");
    EXPECT_EQ(o.warnings[1], "ignoring 'ocsp': it is a server option");

    auto unused = parse_client_options("host=a;sni=b");
    ASSERT_EQ(unused.warnings.size(), 2u);
    EXPECT_EQ(unused.warnings[0], "ignoring 'host': it has no effect without 'ws'");
    EXPECT_EQ(unused.warnings[1], "ignoring 'sni': it has no effect without 'tls'");
}

TEST(ClientOptions, CommonOptions) {
    auto o = parse_client_options("loglevel=debug;threads=3;handshake_timeout=2.5;"
                                  "connect_timeout=1");
    EXPECT_EQ(o.common.loglevel, "debug");
    EXPECT_EQ(o.common.threads, 3u);
    EXPECT_EQ(o.common.handshake_timeout, std::chrono::milliseconds(2500));
    EXPECT_EQ(o.common.connect_timeout, std::chrono::milliseconds(1000));
    EXPECT_EQ(o.common.idle_timeout, std::chrono::milliseconds(0));
    EXPECT_EQ(o.common.max_conns, 0u);
}

TEST(CommonOptions, IdleTimeoutAndMaxConnsOnBothSides) {
    auto c = parse_client_options("idle_timeout=300;max_conns=1000");
    EXPECT_EQ(c.common.idle_timeout, std::chrono::milliseconds(300'000));
    EXPECT_EQ(c.common.max_conns, 1000u);
    EXPECT_TRUE(c.warnings.empty());
    auto s = parse_server_options("idle_timeout=0.25;max_conns=1");
    EXPECT_EQ(s.common.idle_timeout, std::chrono::milliseconds(250));
    EXPECT_EQ(s.common.max_conns, 1u);
    EXPECT_TRUE(s.warnings.empty());
    EXPECT_EQ(server_error("max_conns=x"),
              "max_conns: 'x' is not a connection count; expected 1 to 10000000");
}

TEST(ClientOptions, PoolAndPoolIdle) {
    auto c = parse_client_options("ws;host=a;path=/;pool=8;pool_idle=20");
    EXPECT_EQ(c.pool.size, 8u);
    EXPECT_EQ(c.pool.max_idle, std::chrono::milliseconds(20'000));
    EXPECT_TRUE(c.warnings.empty());
    auto d = parse_client_options("pool=2");
    EXPECT_EQ(d.pool.max_idle, std::chrono::milliseconds(30'000)); // the default
    EXPECT_EQ(parse_client_options("").pool.size, 0u);
    EXPECT_EQ(client_error("pool=x"),
              "pool: 'x' is not a connection count; expected 0 (off) to 256");
    EXPECT_EQ(client_error("pool=257"),
              "pool: '257' is not a connection count; expected 0 (off) to 256");
    // Over the server's wait for a silent connection's request, less a margin.
    EXPECT_EQ(client_error("pool=1;pool_idle=111"),
              "pool_idle: '111' is too long; expected at most 110 seconds (kaminaris closes a "
              "silent connection after 120)");
    EXPECT_EQ(parse_client_options("pool_idle=5").warnings.size(), 1u);
    // pool_max=: how far a pool may grow after a burst; without it, it does not.
    EXPECT_EQ(d.pool.max_size, 2u);
    auto g = parse_client_options("pool=4;pool_max=64");
    EXPECT_EQ(g.pool.size, 4u);
    EXPECT_EQ(g.pool.max_size, 64u);
    EXPECT_TRUE(g.warnings.empty());
    EXPECT_NE(describe(g).find("pool of 4, up to 64 after a burst"), std::string::npos)
        << describe(g);
    EXPECT_EQ(client_error("pool=4;pool_max=3"), "pool_max: 3 is below pool=4; expected 4 to 256");
    EXPECT_EQ(client_error("pool=4;pool_max=257"),
              "pool_max: '257' is not a connection count; expected at most 256");
    EXPECT_EQ(client_error("pool=4;pool_max=x"),
              "pool_max: 'x' is not a connection count; expected at most 256");
    auto lone = parse_client_options("pool_max=8");
    EXPECT_EQ(lone.pool.max_size, 0u);
    EXPECT_EQ(lone.warnings.size(), 1u);
    // Without pool= a bad value is still an error, and says nothing of pool=0.
    EXPECT_EQ(client_error("pool_max=x"),
              "pool_max: 'x' is not a connection count; expected at most 256");
    EXPECT_EQ(parse_server_options("pool=2").warnings.size(), 1u); // a client option
}

TEST(ClientOptions, AndroidVpnFlag) {
    EXPECT_FALSE(parse_client_options("").android_vpn);
    // shadowsocks-android appends it after the user's options, as a flag without a value.
    const auto c = parse_client_options("ws;host=a;path=/;__android_vpn");
    EXPECT_TRUE(c.android_vpn);
    EXPECT_TRUE(c.warnings.empty());
    EXPECT_EQ(describe(c), "ws(host=a, path=/, mask=skip), android vpn (sockets protected through "
                           "protect_path)");
    EXPECT_EQ(client_error("__android_vpn=1"),
              "__android_vpn: is a flag and takes no value; expected '__android_vpn'");
    const auto server = parse_server_options("__android_vpn");
    ASSERT_EQ(server.warnings.size(), 1u);
    EXPECT_EQ(server.warnings[0], "ignoring '__android_vpn': it is a client option");
}

TEST(CommonOptions, PingAndTfoOnBothSides) {
    auto c = parse_client_options("ws;host=a;path=/;ping=15;tfo");
    EXPECT_EQ(c.common.ping, std::chrono::milliseconds(15'000));
    EXPECT_TRUE(c.common.tfo);
    EXPECT_TRUE(c.warnings.empty());
    auto s = parse_server_options("ws;host=a;path=/;ping=0.5;tfo");
    EXPECT_EQ(s.common.ping, std::chrono::milliseconds(500));
    EXPECT_TRUE(s.common.tfo);
    EXPECT_FALSE(parse_client_options("").common.tfo);
    EXPECT_EQ(parse_client_options("").common.ping.count(), 0);
    // ping needs a websocket to ping on.
    EXPECT_EQ(parse_client_options("ping=5").warnings.size(), 1u);
    EXPECT_EQ(server_error("ws;host=a;path=/;ping=-1"),
              "ping: '-1' is not a duration; expected seconds between 0 and 86400, e.g. 'ping=10'");
    EXPECT_EQ(client_error("tfo=1"), "tfo: is a flag and takes no value; expected 'tfo'");
}

TEST(CommonOptions, UdpOnBothSides) {
    auto c = parse_client_options("ws;host=a;path=/;udp;udp_timeout=5");
    EXPECT_TRUE(c.common.udp);
    EXPECT_EQ(c.common.udp_timeout, std::chrono::milliseconds(5'000));
    EXPECT_TRUE(c.warnings.empty());
    EXPECT_EQ(describe(c), "ws(host=a, path=/, mask=skip), udp (idle 5 s)");
    auto s = parse_server_options("tls;servername=a;udp");
    EXPECT_TRUE(s.common.udp);
    EXPECT_EQ(s.common.udp_timeout, std::chrono::milliseconds(60'000)); // the default
    EXPECT_FALSE(parse_server_options("ws;host=a;path=/").common.udp);
    // Plain tcp cannot tell a UDP association from a TCP connection.
    EXPECT_EQ(client_error("udp"),
              "udp: plain tcp cannot carry UDP; expected 'ws' or 'tls' with it");
    EXPECT_EQ(server_error("udp;udp_timeout=3"),
              "udp: plain tcp cannot carry UDP; expected 'ws' or 'tls' with it");
    EXPECT_EQ(parse_client_options("ws;host=a;path=/;udp_timeout=5").warnings.size(), 1u);
    EXPECT_EQ(server_error("ws;host=a;path=/;udp;udp_timeout=0"),
              "udp_timeout: '0' is not a duration; expected seconds between 0 and 86400, e.g. "
              "'udp_timeout=10'");
    EXPECT_EQ(client_error("tls;udp=1"), "udp: is a flag and takes no value; expected 'udp'");
}

TEST(ServerOptions, Fallback) {
    auto s = parse_server_options("ws;host=a;path=/ws;fallback=127.0.0.1:8080");
    ASSERT_TRUE(s.fallback);
    EXPECT_EQ(s.fallback->host, "127.0.0.1");
    EXPECT_EQ(s.fallback->port, 8080);
    EXPECT_TRUE(s.warnings.empty());
    EXPECT_EQ(describe(s), "ws(host=a, path=/ws), fallback to 127.0.0.1:8080");
    EXPECT_EQ(parse_server_options("ws;host=a;path=/ws;fallback=[::1]:80").fallback->host, "::1");
    EXPECT_FALSE(parse_server_options("ws;host=a;path=/ws").fallback);
    // Only a websocket server can tell an upgrade from anything else.
    auto plain = parse_server_options("fallback=127.0.0.1:80");
    EXPECT_FALSE(plain.fallback);
    EXPECT_EQ(plain.warnings.size(), 1u);
    EXPECT_NE(server_error("ws;host=a;path=/ws;fallback=nowhere"), "(no error)");
    // A server option: the client warns and ignores it.
    EXPECT_EQ(parse_client_options("ws;host=a;path=/ws;fallback=127.0.0.1:80").warnings.size(), 1u);
}

TEST(ServerOptions, Mux) {
    // On by default; `off`, `0`, and v2ray-plugin's numbers.
    EXPECT_TRUE(parse_server_options("ws;host=a;path=/ws").mux);
    EXPECT_EQ(describe(parse_server_options("ws;host=a;path=/ws")), "ws(host=a, path=/ws)");
    auto off = parse_server_options("ws;host=a;path=/ws;mux=off");
    EXPECT_FALSE(off.mux);
    EXPECT_TRUE(off.warnings.empty());
    EXPECT_EQ(describe(off), "ws(host=a, path=/ws), mux off");
    EXPECT_FALSE(parse_server_options("ws;host=a;path=/ws;mux=0").mux);
    EXPECT_TRUE(parse_server_options("ws;host=a;path=/ws;mux=on").mux);
    EXPECT_TRUE(parse_server_options("ws;host=a;path=/ws;mux=8").mux);
    EXPECT_EQ(server_error("ws;host=a;path=/ws;mux=yes"),
              "mux: 'yes' is not on or off; expected 'on' (default), 'off' or 0 to 1024");
    EXPECT_EQ(server_error("ws;host=a;path=/ws;mux=1025"),
              "mux: '1025' is not on or off; expected 'on' (default), 'off' or 0 to 1024");
    // Mux.Cool rides on the websocket only.
    EXPECT_EQ(parse_server_options("mux=off").warnings.size(), 1u);
    // A tls server takes kaminaric's Mux.Cool over TLS (ALPN kaminari-mux); wss does not.
    EXPECT_TRUE(parse_server_options("tls;servername=a").tls->mux_alpn);
    EXPECT_FALSE(parse_server_options("ws;host=a;path=/ws;tls;servername=a").tls->mux_alpn);
}

TEST(ClientOptions, MuxOverTls) {
    auto t = parse_client_options("tls;sni=a;mux=8");
    EXPECT_EQ(t.mux, 8u);
    EXPECT_TRUE(t.warnings.empty());
    // The mux links offer kaminari-mux (client_context); alpn= stays what was given.
    EXPECT_TRUE(t.tls->mux_alpn);
    EXPECT_TRUE(t.tls->alpn.empty());
    auto h2 = parse_client_options("tls;sni=a;alpn=h2;mux=8");
    EXPECT_TRUE(h2.tls->mux_alpn);
    EXPECT_EQ(h2.tls->alpn, (std::vector<std::string>{"h2"}));
    // Not without mux, nor over a websocket (wss says Kaminari-Mux in its request).
    EXPECT_FALSE(parse_client_options("tls;sni=a").tls->mux_alpn);
    EXPECT_FALSE(parse_client_options("ws;host=a;path=/;tls;mux=8").tls->mux_alpn);
    EXPECT_FALSE(parse_client_options("tls;sni=a;mux=0").tls->mux_alpn);
    // Plain tcp has no way to say it: ignored with a warning.
    auto tcp = parse_client_options("mux=8");
    EXPECT_EQ(tcp.mux, 0u);
    EXPECT_EQ(tcp.warnings.size(), 1u);
    // pool= gives way to mux.
    auto pooled = parse_client_options("tls;sni=a;mux=8;pool=4");
    EXPECT_EQ(pooled.pool.size, 0u);
    EXPECT_EQ(pooled.warnings.size(), 1u);
}

TEST(ServerOptions, UpstreamExamples) {
    auto ws = parse_server_options("ws;host=example.com;path=/ws");
    ASSERT_TRUE(ws.ws);
    EXPECT_EQ(ws.ws->path, "/ws");

    auto self_signed = parse_server_options("tls;servername=example.com");
    ASSERT_TRUE(self_signed.tls);
    EXPECT_EQ(self_signed.tls->servername, "example.com");
    EXPECT_TRUE(self_signed.tls->cert.empty());

    auto files = parse_server_options("ws;host=a;path=/;tls;cert=c.pem;key=k.pem;ocsp=o.der");
    EXPECT_EQ(files.tls->cert, "c.pem");
    EXPECT_EQ(files.tls->key, "k.pem");
    EXPECT_EQ(files.tls->ocsp, "o.der");
    EXPECT_EQ(describe(files), "ws(host=a, path=/) over tls(cert=c.pem, key=k.pem, ocsp=o.der)");
}

TEST(ServerOptions, BadInputNamesTheOption) {
    const std::vector<std::pair<std::string_view, std::string_view>> rows{
        {"tls", "tls: missing 'cert=<path>' and 'key=<path>'; expected those or "
                "'servername=<name>'"},
        {"tls;cert=c.pem", "tls: 'cert=' needs 'key=<path>'"},
        {"tls;key=k.pem", "tls: 'key=' needs 'cert=<path>'"},
        {"ws;host=a", "ws: missing 'path=<path>'"},
        {"0rtt=1", "(no error)"}, // a client option on the server is only a warning
    };
    for (const auto& [text, message] : rows) {
        EXPECT_EQ(server_error(text), message) << text;
    }
    auto o = parse_server_options("mask=fixed;tls;servername=a");
    ASSERT_EQ(o.warnings.size(), 1u);
    EXPECT_EQ(o.warnings[0], "ignoring 'mask': it is a client option");
}

} // namespace
} // namespace kaminari

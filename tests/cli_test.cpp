#include "kaminari/cli.hpp"

#include <kaminari/error.hpp>

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace kaminari {
namespace {

env_lookup fake_env(std::map<std::string, std::string> vars) {
    return [vars = std::move(vars)](const char* name) -> std::optional<std::string> {
        auto it = vars.find(name);
        if (it == vars.end()) {
            return std::nullopt;
        }
        return it->second;
    };
}

invocation parse(std::vector<std::string_view> args, role who = role::client,
                 std::map<std::string, std::string> env = {}) {
    return parse_invocation(args, who, fake_env(std::move(env)));
}

std::string error_of(std::vector<std::string_view> args, role who = role::client,
                     std::map<std::string, std::string> env = {}) {
    try {
        parse(std::move(args), who, std::move(env));
    } catch (const config_error& e) {
        return e.what();
    }
    return "(no error)";
}

TEST(Endpoint, ParsesEveryForm) {
    EXPECT_EQ(parse_endpoint("1.2.3.4:80", "local"), (endpoint{"1.2.3.4", 80}));
    EXPECT_EQ(parse_endpoint("[::1]:443", "local"), (endpoint{"::1", 443}));
    EXPECT_EQ(parse_endpoint("example.com:65535", "local"), (endpoint{"example.com", 65535}));
    EXPECT_EQ(parse_endpoint("localhost:0", "local"), (endpoint{"localhost", 0}));
    EXPECT_EQ((endpoint{"::1", 80}).to_string(), "[::1]:80");
    EXPECT_EQ((endpoint{"a.b", 80}).to_string(), "a.b:80");
}

TEST(Endpoint, RejectsBadForms) {
    const std::vector<std::pair<std::string_view, std::string_view>> rows{
        {"1.2.3.4", "remote: '1.2.3.4' has no port; expected '<host>:<port>'"},
        {"1.2.3.4:", "remote: '' is not a port; expected a number from 0 to 65535"},
        {"1.2.3.4:65536", "remote: '65536' is not a port; expected a number from 0 to 65535"},
        {"1.2.3.4:8x", "remote: '8x' is not a port; expected a number from 0 to 65535"},
        {":80", "remote: ':80' has no host; expected '<host>:<port>'"},
        {"::1:80", "remote: '::1:80' looks like an IPv6 address; expected '[<ipv6>]:<port>'"},
        {"[::1]80", "remote: '[::1]80' is not an address; expected '[<ipv6>]:<port>'"},
        {"[]:80", "remote: '[]:80' has no IPv6 address in brackets; expected '[<ipv6>]:<port>'"},
        {"a b:80", "remote: 'a b:80' is not a host; expected a name, IPv4 or [IPv6] address"},
    };
    for (const auto& [text, message] : rows) {
        try {
            parse_endpoint(text, "remote");
            ADD_FAILURE() << text << " parsed";
        } catch (const config_error& e) {
            EXPECT_EQ(std::string(e.what()), message);
        }
    }
}

TEST(Invocation, CommandLine) {
    auto inv = parse({"127.0.0.1:1080", "[::1]:8080", "ws;host=a;path=/"});
    EXPECT_EQ(inv.what, invocation::action::run);
    EXPECT_EQ(inv.local, (endpoint{"127.0.0.1", 1080}));
    EXPECT_EQ(inv.remote, (endpoint{"::1", 8080}));
    EXPECT_EQ(inv.options, "ws;host=a;path=/");
    EXPECT_FALSE(inv.sip003);

    auto plain = parse({"127.0.0.1:1", "127.0.0.1:2"});
    EXPECT_EQ(plain.options, "");
}

TEST(Invocation, HelpAndVersion) {
    EXPECT_EQ(parse({"--help"}).what, invocation::action::help);
    EXPECT_EQ(parse({"-h"}).what, invocation::action::help);
    EXPECT_EQ(parse({"a:1", "--version"}).what, invocation::action::version);
    EXPECT_EQ(parse({"-V"}).what, invocation::action::version);
}

TEST(Invocation, BadArguments) {
    EXPECT_EQ(error_of({}), "missing arguments; expected '<local> <remote> [<options>]' or SIP003 "
                            "SS_* environment variables");
    EXPECT_EQ(error_of({"a:1"}), "expected 2 or 3 arguments, got 1");
    EXPECT_EQ(error_of({"a:1", "b:2", "ws", "x"}), "expected 2 or 3 arguments, got 4");
    EXPECT_EQ(error_of({"--frobnicate"}),
              "unknown flag '--frobnicate'; expected --help or --version");
}

const std::map<std::string, std::string> sip003_env{
    {"SS_REMOTE_HOST", "::1"},
    {"SS_REMOTE_PORT", "8388"},
    {"SS_LOCAL_HOST", "127.0.0.1"},
    {"SS_LOCAL_PORT", "1984"},
    {"SS_PLUGIN_OPTIONS", "ws;host=a\\;b;path=/"},
};

TEST(Invocation, Sip003Client) {
    auto inv = parse({}, role::client, sip003_env);
    EXPECT_TRUE(inv.sip003);
    EXPECT_EQ(inv.local, (endpoint{"127.0.0.1", 1984}));
    EXPECT_EQ(inv.remote, (endpoint{"::1", 8388}));
    EXPECT_EQ(inv.options, "ws;host=a\\;b;path=/");
}

TEST(Invocation, Sip003ServerSwapsRoles) {
    auto inv = parse({}, role::server, sip003_env);
    EXPECT_TRUE(inv.sip003);
    EXPECT_EQ(inv.local, (endpoint{"::1", 8388}));
    EXPECT_EQ(inv.remote, (endpoint{"127.0.0.1", 1984}));
}

TEST(Invocation, Sip003OptionsMayBeAbsent) {
    auto env = sip003_env;
    env.erase("SS_PLUGIN_OPTIONS");
    env["SS_REMOTE_HOST"] = "[::1]";
    auto inv = parse({"-V"}, role::client, env);
    EXPECT_EQ(inv.what, invocation::action::run);
    EXPECT_EQ(inv.options, "");
    EXPECT_EQ(inv.remote.host, "::1");
}

TEST(Invocation, Sip003VpnAndFastOpenFlags) {
    // shadowsocks-android's older plugin API: -V (VPN mode) and --fast-open, anywhere.
    const auto plain = parse({}, role::client, sip003_env);
    EXPECT_FALSE(plain.android_vpn);
    EXPECT_FALSE(plain.fast_open);
    for (const auto& args : std::vector<std::vector<std::string_view>>{
             {"-V"}, {"-V", "--fast-open"}, {"--fast-open", "-V"}}) {
        const auto inv = parse(args, role::client, sip003_env);
        EXPECT_EQ(inv.what, invocation::action::run);
        EXPECT_TRUE(inv.sip003);
        EXPECT_TRUE(inv.android_vpn);
        EXPECT_EQ(inv.fast_open, args.size() == 2);
        EXPECT_EQ(inv.options, "ws;host=a\\;b;path=/");
    }
    const auto fast = parse({"--fast-open"}, role::client, sip003_env);
    EXPECT_FALSE(fast.android_vpn);
    EXPECT_TRUE(fast.fast_open);
    // kaminaris reads them too (and warns about -V when it starts).
    EXPECT_TRUE(parse({"-V"}, role::server, sip003_env).android_vpn);
    // Without the SIP003 environment -V is still --version, and --fast-open is unknown.
    EXPECT_EQ(parse({"-V"}).what, invocation::action::version);
    EXPECT_EQ(parse({"127.0.0.1:1", "-V", "127.0.0.1:2"}).what, invocation::action::version);
    EXPECT_EQ(parse({"--version"}, role::client, sip003_env).what, invocation::action::version);
    EXPECT_EQ(error_of({"--fast-open"}),
              "unknown flag '--fast-open'; expected --help or --version");
}

TEST(Invocation, Sip003BadPort) {
    auto env = sip003_env;
    env["SS_LOCAL_PORT"] = "http";
    EXPECT_EQ(error_of({}, role::client, env),
              "SS_LOCAL_PORT: 'http' is not a port; expected a number from 0 to 65535");
}

TEST(Invocation, CommandLineWinsOverEnvironment) {
    auto inv = parse({"127.0.0.1:5", "127.0.0.1:6"}, role::server, sip003_env);
    EXPECT_FALSE(inv.sip003);
    EXPECT_EQ(inv.local.port, 5);
}

TEST(Help, NamesEveryOption) {
    const std::string client = help_text(role::client);
    for (const char* opt : {"ws", "host=", "path=", "mask=", "ed=", "tls", "sni=", "alpn=", "0rtt",
                            "insecure", "loglevel=", "idle_timeout=", "max_conns=", "pool=",
                            "pool_idle=", "pool_max=", "mux=", "\\;"}) {
        EXPECT_NE(client.find(opt), std::string::npos) << opt;
    }
    const std::string server = help_text(role::server);
    for (const char* opt : {"cert=", "key=", "servername=", "ocsp="}) {
        EXPECT_NE(server.find(opt), std::string::npos) << opt;
    }
}

} // namespace
} // namespace kaminari

#include "kaminari/codec/proxy_protocol.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kaminari::codec {
namespace {

using status = proxy_header::status;

proxy_header parse(std::string_view s) {
    return parse_proxy_header({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()});
}

proxy_header parse(const std::vector<std::uint8_t>& v) {
    return parse_proxy_header(v);
}

// A v2 header: signature, version/command, family/transport, length, then `body`.
std::vector<std::uint8_t> v2(std::uint8_t ver_cmd, std::uint8_t fam,
                             const std::vector<std::uint8_t>& body) {
    std::vector<std::uint8_t> out{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
    out.push_back(ver_cmd);
    out.push_back(fam);
    out.push_back(static_cast<std::uint8_t>(body.size() >> 8));
    out.push_back(static_cast<std::uint8_t>(body.size()));
    out.insert(out.end(), body.begin(), body.end());
    return out;
}

TEST(ProxyProtocol, V1Tcp4AndTcp6) {
    const std::string line = "PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\n";
    auto h = parse(line + "GET / HTTP/1.1\r\n");
    ASSERT_EQ(h.st, status::ok) << h.reason;
    EXPECT_EQ(h.version, 1);
    EXPECT_EQ(h.size, line.size()); // never past the CRLF
    EXPECT_EQ(h.source, "192.0.2.7:51234");
    h = parse("PROXY TCP6 2001:db8::1 ::1 65535 80\r\n");
    ASSERT_EQ(h.st, status::ok) << h.reason;
    EXPECT_EQ(h.source, "[2001:db8::1]:65535");
}

TEST(ProxyProtocol, V1UnknownCarriesNoAddress) {
    auto h = parse("PROXY UNKNOWN\r\n");
    ASSERT_EQ(h.st, status::ok);
    EXPECT_EQ(h.size, 15u);
    EXPECT_TRUE(h.source.empty());
    h = parse("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n");
    ASSERT_EQ(h.st, status::ok);
    EXPECT_TRUE(h.source.empty());
}

TEST(ProxyProtocol, EveryPrefixOfAHeaderNeedsMore) {
    const std::string line = "PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\n";
    for (std::size_t k = 0; k < line.size(); ++k) {
        ASSERT_EQ(parse(line.substr(0, k)).st, status::need_more) << k;
    }
    const auto bin = v2(0x21, 0x11, {192, 0, 2, 7, 198, 51, 100, 1, 0xC8, 0x22, 0x01, 0xBB});
    for (std::size_t k = 0; k < bin.size(); ++k) {
        const auto h = parse(std::vector<std::uint8_t>(bin.begin(), bin.begin() + k));
        ASSERT_EQ(h.st, status::need_more) << k;
        if (k >= 16) {
            EXPECT_EQ(h.size, bin.size()); // the length field says how much
        }
    }
}

TEST(ProxyProtocol, V1Malformed) {
    for (std::string_view bad : {
             "PROXY TCP4 192.0.2.7 198.51.100.1 51234\r\n",       // a field missing
             "PROXY TCP4 192.0.2.7 198.51.100.1 51234 443 x\r\n", // one too many
             "PROXY TCP4  192.0.2.7 198.51.100.1 51234 443\r\n",  // double space
             "PROXY TCP4 192.0.2.777 198.51.100.1 51234 443\r\n", // bad address
             "PROXY TCP4 2001:db8::1 198.51.100.1 51234 443\r\n", // family mismatch
             "PROXY TCP4 192.0.2.7 198.51.100.1 65536 443\r\n",   // port out of range
             "PROXY TCP4 192.0.2.7 198.51.100.1 0443 443\r\n",    // leading zero
             "PROXY UDP4 192.0.2.7 198.51.100.1 51234 443\r\n",   // not a v1 protocol
             "PROXY TCP4 192.0.2.7\n",                            // bare LF
             "PROXY TCP4 192.0.2.7\t198.51.100.1 51234 443\r\n",
         }) {
        EXPECT_EQ(parse(bad).st, status::invalid) << bad;
    }
    // A NUL would end the address early for inet_pton; the whole line was accepted while a
    // prefix of it was refused (found by the fuzzer).
    using namespace std::string_view_literals;
    EXPECT_EQ(parse("PROXY TCP4 192.0.2.7\0 198.51.100.1 51234 443\r\n"sv).st, status::invalid);
    // No CRLF within 107 bytes.
    EXPECT_EQ(parse("PROXY TCP4 " + std::string(120, '1')).st, status::invalid);
}

TEST(ProxyProtocol, V2Ipv4Ipv6LocalAndTlvs) {
    auto h = parse(v2(0x21, 0x11, {192, 0, 2, 7, 198, 51, 100, 1, 0xC8, 0x22, 0x01, 0xBB}));
    ASSERT_EQ(h.st, status::ok) << h.reason;
    EXPECT_EQ(h.version, 2);
    EXPECT_EQ(h.size, 28u);
    EXPECT_EQ(h.source, "192.0.2.7:51234");

    std::vector<std::uint8_t> six(36, 0);
    six[0] = 0x20;
    six[1] = 0x01;
    six[2] = 0x0d;
    six[3] = 0xb8;
    six[15] = 1;
    six[32] = 0x12;
    six[33] = 0x34;
    h = parse(v2(0x21, 0x21, six));
    ASSERT_EQ(h.st, status::ok) << h.reason;
    EXPECT_EQ(h.source, "[2001:db8::1]:4660");

    // TLVs after the addresses are skipped; the header is 16 + length bytes.
    std::vector<std::uint8_t> body{127, 0, 0, 1, 127, 0, 0, 1, 0x30, 0x39, 0x01, 0xBB};
    body.insert(body.end(), {0x04, 0x00, 0x03, 0, 0, 0}); // NOOP TLV
    auto bin = v2(0x21, 0x11, body);
    bin.push_back('G'); // the connection's own first byte
    h = parse(bin);
    ASSERT_EQ(h.st, status::ok);
    EXPECT_EQ(h.size, bin.size() - 1);
    EXPECT_EQ(h.source, "127.0.0.1:12345");

    // LOCAL (a balancer's health check) and UNSPEC: no client address.
    h = parse(v2(0x20, 0x00, {}));
    ASSERT_EQ(h.st, status::ok);
    EXPECT_TRUE(h.source.empty());
}

TEST(ProxyProtocol, V2Malformed) {
    EXPECT_EQ(parse(v2(0x11, 0x11, std::vector<std::uint8_t>(12))).st, status::invalid); // v1
    EXPECT_EQ(parse(v2(0x22, 0x11, std::vector<std::uint8_t>(12))).st, status::invalid); // cmd
    EXPECT_EQ(parse(v2(0x21, 0x11, std::vector<std::uint8_t>(8))).st, status::invalid);  // short
    EXPECT_EQ(parse(v2(0x21, 0x21, std::vector<std::uint8_t>(20))).st, status::invalid);
    EXPECT_EQ(parse(v2(0x21, 0x41, std::vector<std::uint8_t>(12))).st, status::invalid); // family
    EXPECT_EQ(parse(v2(0x21, 0x15, std::vector<std::uint8_t>(12))).st, status::invalid);
    // Longer than we take, known from the length field alone.
    auto big = v2(0x21, 0x11, {});
    big[14] = 0x10;
    big[15] = 0x00;
    EXPECT_EQ(parse(big).st, status::invalid);
}

TEST(ProxyProtocol, AnythingElseIsRefusedAtOnce) {
    EXPECT_EQ(parse("GET / HTTP/1.1\r\n").st, status::invalid);
    EXPECT_EQ(parse("\x16\x03\x01").st, status::invalid); // a TLS ClientHello
    EXPECT_EQ(parse("PROXZ").st, status::invalid);
    EXPECT_EQ(parse("").st, status::need_more);
}

} // namespace
} // namespace kaminari::codec

#include "kaminari/codec/frame.hpp"

#include "support/guarded_buffer.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

namespace kaminari::codec {
namespace {

std::span<const std::uint8_t> as_bytes(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

TEST(Frame, RoundTripsEveryLengthClass) {
    const std::uint64_t lengths[] = {
        0, 1, 125, 126, 127, 65535, 65536, 0xffff'ffffULL, max_payload_length};
    const std::size_t sizes[] = {2, 2, 2, 4, 4, 4, 10, 10, 10};
    for (std::size_t i = 0; i < std::size(lengths); ++i) {
        for (bool masked : {false, true}) {
            frame_header h;
            h.op = opcode::binary;
            h.fin = (i % 2) == 0;
            h.length = lengths[i];
            h.masked = masked;
            h.key = masked ? mask_key{0x37, 0xfa, 0x21, 0x3d} : mask_key{};
            std::array<std::uint8_t, max_header_size> buf{};
            const std::size_t n = encode_header(h, buf);
            ASSERT_EQ(n, sizes[i] + (masked ? 4 : 0)) << lengths[i];
            ASSERT_EQ(n, header_size(h));
            const auto r =
                decode_header(std::span(buf.data(), n), masked ? role::server : role::client);
            ASSERT_EQ(r.err, errc::ok) << lengths[i];
            EXPECT_EQ(r.consumed, n);
            EXPECT_EQ(r.header.length, h.length);
            EXPECT_EQ(r.header.fin, h.fin);
            EXPECT_EQ(r.header.op, h.op);
            EXPECT_EQ(r.header.masked, masked);
            EXPECT_EQ(r.header.key, h.key);
            // Every truncated prefix asks for more.
            for (std::size_t k = 0; k < n; ++k) {
                const auto p =
                    decode_header(std::span(buf.data(), k), masked ? role::server : role::client);
                EXPECT_EQ(p.err, errc::need_more) << "length " << lengths[i] << " prefix " << k;
                EXPECT_EQ(p.consumed, 0u);
            }
        }
    }
}

TEST(Frame, EncodesRfcExamples) {
    // RFC 6455 §5.7.
    std::array<std::uint8_t, max_header_size> buf{};
    frame_header h{true, opcode::text, true, {0x37, 0xfa, 0x21, 0x3d}, 5};
    ASSERT_EQ(encode_header(h, buf), 6u);
    EXPECT_EQ(std::vector(buf.begin(), buf.begin() + 6),
              (std::vector<std::uint8_t>{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d}));
    h = {true, opcode::binary, false, {}, 256};
    ASSERT_EQ(encode_header(h, buf), 4u);
    EXPECT_EQ(std::vector(buf.begin(), buf.begin() + 4),
              (std::vector<std::uint8_t>{0x82, 0x7e, 0x01, 0x00}));
    h = {true, opcode::binary, false, {}, 65536};
    ASSERT_EQ(encode_header(h, buf), 10u);
    EXPECT_EQ(std::vector(buf.begin(), buf.begin() + 10),
              (std::vector<std::uint8_t>{0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0}));
    h = {true, opcode::ping, false, {}, 5};
    ASSERT_EQ(encode_header(h, buf), 2u);
    EXPECT_EQ(buf[0], 0x89);
    EXPECT_EQ(buf[1], 0x05);
}

TEST(Frame, DecodesEveryOpcode) {
    const std::pair<std::uint8_t, opcode> ops[] = {
        {0x00, opcode::continuation}, {0x81, opcode::text}, {0x82, opcode::binary},
        {0x88, opcode::close},        {0x89, opcode::ping}, {0x8a, opcode::pong}};
    for (auto [b0, op] : ops) {
        const std::uint8_t bytes[] = {b0, 0x00};
        const auto r = decode_header(bytes, role::client);
        ASSERT_EQ(r.err, errc::ok);
        EXPECT_EQ(r.header.op, op);
        EXPECT_EQ(r.header.fin, (b0 & 0x80) != 0);
    }
}

struct bad_case {
    std::string_view bytes;
    role local;
    errc expected;
    std::string_view comment;
};

TEST(Frame, RejectsBadHeaders) {
    using namespace std::string_view_literals;
    const bad_case cases[] = {
        {"\xc2\x00"sv, role::client, errc::reserved_bits, "RSV1"},
        {"\xa2\x00"sv, role::client, errc::reserved_bits, "RSV2"},
        {"\x92\x00"sv, role::client, errc::reserved_bits, "RSV3"},
        {"\x83\x00"sv, role::client, errc::bad_opcode, "opcode 3"},
        {"\x87\x00"sv, role::client, errc::bad_opcode, "opcode 7"},
        {"\x8b\x00"sv, role::client, errc::bad_opcode, "opcode B"},
        {"\x8f\x00"sv, role::client, errc::bad_opcode, "opcode F"},
        {"\x09\x00"sv, role::client, errc::fragmented_control, "ping without FIN"},
        {"\x08\x00"sv, role::client, errc::fragmented_control, "close without FIN"},
        {"\x0a\x00"sv, role::client, errc::fragmented_control, "pong without FIN"},
        {"\x89\x7e"sv, role::client, errc::control_too_long, "ping with 16-bit length"},
        {"\x88\x7f"sv, role::client, errc::control_too_long, "close with 64-bit length"},
        {"\x82\x00"sv, role::server, errc::missing_mask, "server gets unmasked"},
        {"\x82\x80\x00\x00\x00\x00"sv, role::client, errc::unexpected_mask, "client gets masked"},
        {"\x82\x7e\x00\x7d"sv, role::client, errc::non_canonical_length, "125 in 16 bits"},
        {"\x82\x7e\x00\x00"sv, role::client, errc::non_canonical_length, "0 in 16 bits"},
        {"\x82\x7f\x00\x00\x00\x00\x00\x00\xff\xff"sv, role::client, errc::non_canonical_length,
         "65535 in 64 bits"},
        {"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00"sv, role::client, errc::bad_length,
         "64-bit top bit"},
        {"\x82\x7f\xff\xff\xff\xff\xff\xff\xff\xff"sv, role::client, errc::bad_length,
         "64-bit all ones"},
        {"\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03\x04"sv, role::server,
         errc::bad_length, "masked 64-bit top bit"},
    };
    for (const auto& c : cases) {
        const auto r = decode_header(as_bytes(c.bytes), c.local);
        EXPECT_EQ(r.err, c.expected) << c.comment;
        EXPECT_EQ(r.consumed, 0u) << c.comment;
    }
}

TEST(Frame, RejectsAsSoonAsTheBytesShowIt) {
    // Role and opcode errors are visible in the first two bytes, before any extension.
    const std::uint8_t unmasked_long[] = {0x82, 0x7f};
    EXPECT_EQ(decode_header(unmasked_long, role::server).err, errc::missing_mask);
    const std::uint8_t bad_op[] = {0x85, 0xff};
    EXPECT_EQ(decode_header(bad_op, role::server).err, errc::bad_opcode);
    // One byte is never enough to judge.
    EXPECT_EQ(decode_header(std::span(bad_op, 1), role::server).err, errc::need_more);
}

TEST(Frame, HeaderLeavesPayloadAlone) {
    const std::uint8_t bytes[] = {0x82, 0x03, 'a', 'b', 'c', 0x82};
    const auto r = decode_header(bytes, role::client);
    ASSERT_EQ(r.err, errc::ok);
    EXPECT_EQ(r.consumed, 2u);
    EXPECT_EQ(r.header.length, 3u);
}

TEST(Frame, NeverReadsPastTheInput) {
    test::guarded_buffer guard(64);
    using namespace std::string_view_literals;
    const std::string_view headers[] = {
        "\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00\x01\x02\x03\x04"sv,
        "\x82\xfe\x01\x00\x01\x02\x03\x04"sv,
        "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"sv,
    };
    for (std::string_view h : headers) {
        for (std::size_t k = 0; k <= h.size(); ++k) {
            const auto bytes = guard.place(h.substr(0, k));
            (void)decode_header(bytes, role::server);
            (void)decode_header(bytes, role::client);
        }
    }
}

} // namespace
} // namespace kaminari::codec

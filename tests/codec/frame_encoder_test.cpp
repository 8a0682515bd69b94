#include "kaminari/codec/frame_encoder.hpp"

#include <kaminari/codec/frame_decoder.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace kaminari::codec {
namespace {

using bytes = std::vector<std::uint8_t>;

bytes to_vec(std::span<const std::uint8_t> s) {
    return {s.begin(), s.end()};
}

TEST(FrameEncoder, ServerFramesAreUnmasked) {
    frame_encoder e(role::server, mask_mode::standard, {1, 2, 3, 4});
    EXPECT_FALSE(e.needs_frame_key());
    bytes payload{'H', 'e', 'l', 'l', 'o'};
    EXPECT_EQ(to_vec(e.encode(opcode::binary, payload, {9, 9, 9, 9})), (bytes{0x82, 0x05}));
    EXPECT_EQ(payload, (bytes{'H', 'e', 'l', 'l', 'o'}));
}

TEST(FrameEncoder, SkipModeSendsZeroKeyAndLeavesPayload) {
    frame_encoder e(role::client, mask_mode::skip, {1, 2, 3, 4});
    EXPECT_FALSE(e.needs_frame_key());
    bytes payload{'a', 'b', 'c'};
    EXPECT_EQ(to_vec(e.encode(opcode::binary, payload, {7, 7, 7, 7})),
              (bytes{0x82, 0x83, 0, 0, 0, 0}));
    EXPECT_EQ(payload, (bytes{'a', 'b', 'c'}));
}

TEST(FrameEncoder, FixedModeUsesConnectionKeyForEveryFrame) {
    frame_encoder e(role::client, mask_mode::fixed, {0x37, 0xfa, 0x21, 0x3d});
    EXPECT_FALSE(e.needs_frame_key());
    for (int i = 0; i < 3; ++i) {
        bytes payload{'H', 'e', 'l', 'l', 'o'};
        // RFC 6455 §5.7, as a binary frame.
        EXPECT_EQ(to_vec(e.encode(opcode::binary, payload, {1, 1, 1, 1})),
                  (bytes{0x82, 0x85, 0x37, 0xfa, 0x21, 0x3d}));
        EXPECT_EQ(payload, (bytes{0x7f, 0x9f, 0x4d, 0x51, 0x58}));
    }
}

TEST(FrameEncoder, StandardModeUsesEachFrameKey) {
    frame_encoder e(role::client, mask_mode::standard);
    EXPECT_TRUE(e.needs_frame_key());
    bytes a{'H', 'e', 'l', 'l', 'o'};
    EXPECT_EQ(to_vec(e.encode(opcode::binary, a, {0x37, 0xfa, 0x21, 0x3d})),
              (bytes{0x82, 0x85, 0x37, 0xfa, 0x21, 0x3d}));
    EXPECT_EQ(a, (bytes{0x7f, 0x9f, 0x4d, 0x51, 0x58}));
    bytes b{0, 0, 0, 0, 0};
    EXPECT_EQ(to_vec(e.encode(opcode::binary, b, {1, 2, 3, 4})), (bytes{0x82, 0x85, 1, 2, 3, 4}));
    EXPECT_EQ(b, (bytes{1, 2, 3, 4, 1}));
}

TEST(FrameEncoder, LengthClasses) {
    frame_encoder e(role::server, mask_mode::skip);
    bytes p126(126);
    EXPECT_EQ(to_vec(e.encode(opcode::binary, p126)), (bytes{0x82, 0x7e, 0x00, 0x7e}));
    bytes p64k(65535);
    EXPECT_EQ(to_vec(e.encode(opcode::binary, p64k)), (bytes{0x82, 0x7e, 0xff, 0xff}));
    bytes big(65536);
    EXPECT_EQ(to_vec(e.encode(opcode::binary, big)), (bytes{0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0}));
    bytes none;
    EXPECT_EQ(to_vec(e.encode(opcode::binary, none)), (bytes{0x82, 0x00}));
}

TEST(FrameEncoder, ControlFrames) {
    frame_encoder e(role::client, mask_mode::fixed, {0, 1, 0, 0});
    bytes code{0x03, 0xeb}; // 1003
    EXPECT_EQ(to_vec(e.encode(opcode::close, code)), (bytes{0x88, 0x82, 0, 1, 0, 0}));
    EXPECT_EQ(code, (bytes{0x03, 0xea}));
    frame_encoder s(role::server, mask_mode::skip);
    bytes ping(125, 'p');
    EXPECT_EQ(to_vec(s.encode(opcode::pong, ping)), (bytes{0x8a, 0x7d}));
}

TEST(FrameEncoder, DecoderReadsWhatEncoderWrites) {
    for (mask_mode mode : {mask_mode::skip, mask_mode::fixed, mask_mode::standard}) {
        frame_encoder e(role::client, mode, {0x11, 0x22, 0x33, 0x44});
        frame_decoder d(role::server);
        bytes wire;
        bytes want;
        for (std::size_t n : {0u, 1u, 5u, 126u, 1000u, 70000u}) {
            bytes payload(n);
            for (std::size_t i = 0; i < n; ++i) {
                payload[i] = static_cast<std::uint8_t>(i * 31 + n);
            }
            want.insert(want.end(), payload.begin(), payload.end());
            const auto k = static_cast<std::uint8_t>(n);
            const auto head = e.encode(opcode::binary, payload, {k, 0x5a, k, 0xa5});
            wire.insert(wire.end(), head.begin(), head.end());
            wire.insert(wire.end(), payload.begin(), payload.end());
        }
        bytes got;
        for (std::size_t at = 0; at < wire.size(); at += 4093) {
            bytes chunk(wire.begin() + static_cast<std::ptrdiff_t>(at),
                        wire.begin() +
                            static_cast<std::ptrdiff_t>(std::min(at + 4093, wire.size())));
            const decode_step s = d.feed(chunk);
            ASSERT_EQ(s.err, errc::ok);
            got.insert(got.end(), chunk.begin(),
                       chunk.begin() + static_cast<std::ptrdiff_t>(s.payload));
        }
        EXPECT_EQ(got, want) << int(mode);
    }
}

} // namespace
} // namespace kaminari::codec

#include "kaminari/codec/udp_frame.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace kaminari::codec {
namespace {

using bytes = std::vector<std::uint8_t>;

bytes frame_of(const bytes& datagram) {
    bytes out(udp_header_size + datagram.size());
    EXPECT_EQ(encode_udp_frame(datagram, out), out.size());
    return out;
}

TEST(UdpFrame, HeaderIsBigEndianLength) {
    std::array<std::uint8_t, 2> h{};
    ASSERT_TRUE(encode_udp_header(0x1234, h));
    EXPECT_EQ(h[0], 0x12);
    EXPECT_EQ(h[1], 0x34);
    ASSERT_TRUE(encode_udp_header(max_udp_datagram, h));
    EXPECT_EQ(h[0], 0xff);
    EXPECT_EQ(h[1], 0xe3); // 65507 = 0xffe3
    h = {7, 7};
    EXPECT_FALSE(encode_udp_header(max_udp_datagram + 1, h));
    EXPECT_EQ(h[0], 7); // nothing written
}

TEST(UdpFrame, RoundTripsEverySizeClass) {
    for (std::size_t n : {0u, 1u, 2u, 125u, 126u, 65535u / 2, 65506u, 65507u}) {
        bytes d(n);
        for (std::size_t i = 0; i < n; ++i) {
            d[i] = static_cast<std::uint8_t>(i * 31 + 7);
        }
        const bytes f = frame_of(d);
        const auto r = decode_udp_frame(f);
        ASSERT_EQ(r.status, udp_frame_status::ok) << n;
        EXPECT_EQ(r.size, f.size());
        EXPECT_EQ(bytes(r.datagram.begin(), r.datagram.end()), d);
    }
}

TEST(UdpFrame, EncodeRefusesTooLargeOrTooSmallOutput) {
    bytes big(max_udp_datagram + 1);
    bytes out(max_udp_frame + 10);
    EXPECT_EQ(encode_udp_frame(big, out), 0u);
    bytes d{1, 2, 3};
    for (std::size_t k = 0; k < 5; ++k) {
        EXPECT_EQ(encode_udp_frame(d, std::span(out).first(k)), 0u) << k;
    }
    EXPECT_EQ(encode_udp_frame(d, std::span(out).first(5)), 5u);
}

TEST(UdpFrame, EveryTruncationNeedsMore) {
    const bytes f = frame_of({9, 8, 7, 6, 5});
    for (std::size_t k = 0; k < f.size(); ++k) {
        const auto r = decode_udp_frame(std::span(f).first(k));
        ASSERT_EQ(r.status, udp_frame_status::need_more) << k;
        EXPECT_EQ(r.size, k < 2 ? 2u : f.size()) << k;
    }
}

TEST(UdpFrame, LengthAboveMaxIsRefusedBeforeItsBytes) {
    // 70 000 cannot be written in 16 bits; the largest claims (65508..65535) are refused at once.
    for (unsigned len : {65508u, 65535u}) {
        const bytes f{static_cast<std::uint8_t>(len >> 8), static_cast<std::uint8_t>(len)};
        const auto r = decode_udp_frame(f);
        EXPECT_EQ(r.status, udp_frame_status::too_large) << len;
        EXPECT_EQ(r.size, 0u);
    }
    EXPECT_EQ(to_string(udp_frame_status::too_large), "datagram too large");
}

TEST(UdpFrame, ConsecutiveFramesKeepBoundariesAndOrder) {
    bytes stream;
    for (std::uint8_t i = 0; i < 20; ++i) {
        const bytes f = frame_of(bytes(i, i));
        stream.insert(stream.end(), f.begin(), f.end());
    }
    std::span<const std::uint8_t> in(stream);
    for (std::uint8_t i = 0; i < 20; ++i) {
        const auto r = decode_udp_frame(in);
        ASSERT_EQ(r.status, udp_frame_status::ok);
        EXPECT_EQ(bytes(r.datagram.begin(), r.datagram.end()), bytes(i, i));
        in = in.subspan(r.size);
    }
    EXPECT_TRUE(in.empty());
    EXPECT_EQ(decode_udp_frame(in).status, udp_frame_status::need_more);
}

TEST(UdpFrame, MarkerIsNotAValidFrameStart) {
    // The tls marker is read before any frame; its first two bytes claim too much, so a peer
    // that does not expect the marker fails at once rather than misreading it.
    EXPECT_EQ(decode_udp_frame(udp_stream_marker).status, udp_frame_status::too_large);
    EXPECT_EQ(udp_stream_marker.size(), 16u);
}

} // namespace
} // namespace kaminari::codec

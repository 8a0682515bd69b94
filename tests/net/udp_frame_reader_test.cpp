#include "kaminari/net/udp.hpp"
#include "support/mem_stream.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace kaminari::net {
namespace {

using bytes = std::vector<std::uint8_t>;
using test::mem_stream;

bytes datagram(std::size_t n, std::uint8_t seed) {
    bytes d(n);
    for (std::size_t i = 0; i < n; ++i) {
        d[i] = static_cast<std::uint8_t>(seed + i * 13);
    }
    return d;
}

bytes stream_of(const std::vector<bytes>& datagrams) {
    bytes out;
    for (const auto& d : datagrams) {
        bytes f(codec::udp_header_size + d.size());
        EXPECT_EQ(codec::encode_udp_frame(d, f), f.size());
        out.insert(out.end(), f.begin(), f.end());
    }
    return out;
}

// Reads datagrams from `s` until the reader stops; returns them and how it stopped.
asio::awaitable<void> read_all(mem_stream& s, udp_frame_reader& reader, std::vector<bytes>& got,
                               udp_read_end& end) {
    for (;;) {
        auto r = co_await reader.next(s);
        if (r.end != udp_read_end::none) {
            end = r.end;
            co_return;
        }
        got.emplace_back(r.datagram.begin(), r.datagram.end());
    }
}

TEST(UdpFrameReader, EverySplitOfTheStreamGivesTheSameDatagrams) {
    const std::vector<bytes> want{datagram(0, 1),
                                  datagram(1, 2),
                                  datagram(300, 3),
                                  datagram(20'000, 4),
                                  datagram(codec::max_udp_datagram, 5),
                                  datagram(7, 6)};
    const bytes wire = stream_of(want);
    for (std::size_t piece : {1u, 2u, 3u, 7u, 1000u, 16'384u, 70'000u}) {
        test::runner rn;
        auto [a, b] = mem_stream::make_pair(rn.ctx.get_executor());
        a.read_size(piece);
        a.append(wire);
        b.close();
        udp_frame_reader reader;
        std::vector<bytes> got;
        udp_read_end end = udp_read_end::none;
        test::run(rn.ctx, read_all(a, reader, got, end));
        EXPECT_EQ(end, udp_read_end::closed) << piece;
        EXPECT_EQ(got, want) << piece;
    }
}

TEST(UdpFrameReader, TooLargeClaimStopsAtOnce) {
    test::runner rn;
    auto [a, b] = mem_stream::make_pair(rn.ctx.get_executor());
    bytes wire = stream_of({datagram(5, 9)});
    wire.push_back(0xff);
    wire.push_back(0xff); // claims 65535; the peer stays open
    a.append(wire);
    udp_frame_reader reader;
    std::vector<bytes> got;
    udp_read_end end = udp_read_end::none;
    test::run(rn.ctx, read_all(a, reader, got, end));
    EXPECT_EQ(end, udp_read_end::too_large);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0], datagram(5, 9));
}

TEST(UdpFrameReader, EndInsideAFrameIsTruncated) {
    for (const bytes& tail : {bytes{0x00}, bytes{0x00, 0x10, 1, 2, 3}}) {
        test::runner rn;
        auto [a, b] = mem_stream::make_pair(rn.ctx.get_executor());
        a.append(tail);
        b.close();
        udp_frame_reader reader;
        std::vector<bytes> got;
        udp_read_end end = udp_read_end::none;
        test::run(rn.ctx, read_all(a, reader, got, end));
        EXPECT_EQ(end, udp_read_end::truncated);
        EXPECT_TRUE(got.empty());
    }
}

TEST(UdpFrameReader, PreloadedBytesComeFirst) {
    test::runner rn;
    auto [a, b] = mem_stream::make_pair(rn.ctx.get_executor());
    const bytes wire = stream_of({datagram(10, 1), datagram(3, 2)});
    udp_frame_reader reader;
    // The first frame and one byte of the second were read with the tls marker.
    reader.preload(std::span(wire).first(13));
    a.append(std::span(wire).subspan(13));
    b.close();
    std::vector<bytes> got;
    udp_read_end end = udp_read_end::none;
    test::run(rn.ctx, read_all(a, reader, got, end));
    EXPECT_EQ(end, udp_read_end::closed);
    EXPECT_EQ(got, (std::vector<bytes>{datagram(10, 1), datagram(3, 2)}));
}

} // namespace
} // namespace kaminari::net

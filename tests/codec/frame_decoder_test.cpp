#include "kaminari/codec/frame_decoder.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string_view>
#include <vector>

namespace kaminari::codec {
namespace {

using bytes = std::vector<std::uint8_t>;

bytes pattern(std::size_t n, std::uint32_t seed) {
    bytes v(n);
    for (auto& b : v) {
        seed = seed * 1664525u + 1013904223u;
        b = static_cast<std::uint8_t>(seed >> 24);
    }
    return v;
}

// Appends one frame, built by hand (header encoder + byte-wise masking).
void append_frame(bytes& out, opcode op, const bytes& payload, bool masked, mask_key key = {},
                  bool fin = true) {
    frame_header h{fin, op, masked, key, payload.size()};
    std::array<std::uint8_t, max_header_size> head{};
    const std::size_t n = encode_header(h, head);
    out.insert(out.end(), head.begin(), head.begin() + n);
    for (std::size_t i = 0; i < payload.size(); ++i) {
        out.push_back(masked ? static_cast<std::uint8_t>(payload[i] ^ key[i % 4]) : payload[i]);
    }
}

struct outcome {
    bytes payload;
    int pings = 0;
    int pongs = 0;
    bytes last_ping;
    bool close = false;
    errc err = errc::ok;
};

// Feeds `wire` cut at `cuts` (ascending offsets), each piece in its own buffer as a fresh read.
outcome feed_pieces(frame_decoder& d, const bytes& wire, const std::vector<std::size_t>& cuts) {
    outcome o;
    std::size_t from = 0;
    for (std::size_t i = 0; i <= cuts.size(); ++i) {
        const std::size_t to = i < cuts.size() ? cuts[i] : wire.size();
        bytes buf(wire.begin() + static_cast<std::ptrdiff_t>(from),
                  wire.begin() + static_cast<std::ptrdiff_t>(to));
        from = to;
        const decode_step s = d.feed(buf);
        if (s.err != errc::ok) {
            o.err = s.err;
            return o;
        }
        o.payload.insert(o.payload.end(), buf.begin(),
                         buf.begin() + static_cast<std::ptrdiff_t>(s.payload));
        if (s.ping) {
            ++o.pings;
            o.last_ping.assign(d.ping_payload().begin(), d.ping_payload().end());
        }
        o.pongs += s.pong ? 1 : 0;
        o.close = o.close || s.close;
    }
    return o;
}

// A stream as a peer in one mask mode sends it: data frames of awkward lengths, a fragmented
// message, a ping and a pong in between.
struct scenario {
    bytes wire;
    bytes payload;
    bytes ping;
};

scenario make_scenario(role receiver, mask_mode mode) {
    scenario s;
    const bool masked = receiver == role::server;
    std::uint32_t frame_no = 0;
    auto key = [&]() -> mask_key {
        ++frame_no;
        switch (mode) {
        case mask_mode::skip:
            return {};
        case mask_mode::fixed:
            return {0x9d, 0x03, 0x7e, 0x41};
        case mask_mode::standard:
            break;
        }
        return {static_cast<std::uint8_t>(frame_no * 37 + 1), static_cast<std::uint8_t>(frame_no),
                0x55, static_cast<std::uint8_t>(0xf0 ^ frame_no)};
    };
    auto data = [&](std::size_t n, opcode op = opcode::binary, bool fin = true) {
        const bytes p = pattern(n, static_cast<std::uint32_t>(n * 7 + frame_no));
        append_frame(s.wire, op, p, masked, key(), fin);
        s.payload.insert(s.payload.end(), p.begin(), p.end());
    };
    data(1);
    data(0);
    data(3);
    data(5);
    s.ping = pattern(9, 99);
    append_frame(s.wire, opcode::ping, s.ping, masked, key());
    data(13);
    data(125);
    append_frame(s.wire, opcode::pong, pattern(4, 5), masked, key());
    data(126);
    data(7, opcode::binary, false);
    data(6, opcode::continuation, false);
    data(11, opcode::continuation, true);
    data(300);
    data(2);
    return s;
}

struct mode_case {
    role receiver;
    mask_mode mode;
};

const mode_case all_modes[] = {{role::server, mask_mode::skip},
                               {role::server, mask_mode::fixed},
                               {role::server, mask_mode::standard},
                               {role::client, mask_mode::skip}};

TEST(FrameDecoder, UnmasksAcrossEverySplit) {
    for (const auto& mc : all_modes) {
        const scenario s = make_scenario(mc.receiver, mc.mode);
        for (std::size_t cut = 0; cut <= s.wire.size(); ++cut) {
            frame_decoder d(mc.receiver);
            const outcome o = feed_pieces(d, s.wire, {cut});
            ASSERT_EQ(o.err, errc::ok) << "cut " << cut;
            ASSERT_EQ(o.payload, s.payload) << "mode " << int(mc.mode) << " cut " << cut;
            ASSERT_EQ(o.pings, 1);
            ASSERT_EQ(o.last_ping, s.ping);
            ASSERT_EQ(o.pongs, 1);
            ASSERT_TRUE(d.idle());
        }
    }
}

TEST(FrameDecoder, UnmasksAtEveryReadCap) {
    for (const auto& mc : all_modes) {
        const scenario s = make_scenario(mc.receiver, mc.mode);
        for (std::size_t cap = 1; cap <= s.wire.size() + 1; ++cap) {
            std::vector<std::size_t> cuts;
            for (std::size_t at = cap; at < s.wire.size(); at += cap) {
                cuts.push_back(at);
            }
            frame_decoder d(mc.receiver);
            const outcome o = feed_pieces(d, s.wire, cuts);
            ASSERT_EQ(o.err, errc::ok) << "cap " << cap;
            ASSERT_EQ(o.payload, s.payload) << "mode " << int(mc.mode) << " cap " << cap;
            ASSERT_EQ(o.last_ping, s.ping) << "cap " << cap;
            ASSERT_EQ(o.pongs, 1);
        }
    }
}

TEST(FrameDecoder, UnmasksAcrossRandomChunkings) {
    std::uint32_t seed = 7;
    for (const auto& mc : all_modes) {
        const scenario s = make_scenario(mc.receiver, mc.mode);
        for (int round = 0; round < 300; ++round) {
            std::vector<std::size_t> cuts;
            std::size_t at = 0;
            for (;;) {
                seed = seed * 1664525u + 1013904223u;
                at += 1 + (seed >> 16) % 23;
                if (at >= s.wire.size()) {
                    break;
                }
                cuts.push_back(at);
            }
            frame_decoder d(mc.receiver);
            const outcome o = feed_pieces(d, s.wire, cuts);
            ASSERT_EQ(o.err, errc::ok);
            ASSERT_EQ(o.payload, s.payload) << "round " << round;
        }
    }
}

TEST(FrameDecoder, LargeMaskedFrameAtOddCaps) {
    const bytes payload = pattern(70000, 3);
    bytes wire;
    append_frame(wire, opcode::binary, payload, true, {1, 2, 3, 4});
    append_frame(wire, opcode::binary, payload, true, {5, 6, 7, 8});
    bytes want = payload;
    want.insert(want.end(), payload.begin(), payload.end());
    for (std::size_t cap : {1u, 3u, 5u, 4093u, 8191u, 65537u}) {
        std::vector<std::size_t> cuts;
        for (std::size_t at = cap; at < wire.size(); at += cap) {
            cuts.push_back(at);
        }
        frame_decoder d(role::server);
        const outcome o = feed_pieces(d, wire, cuts);
        ASSERT_EQ(o.err, errc::ok);
        ASSERT_EQ(o.payload, want) << "cap " << cap;
    }
}

TEST(FrameDecoder, ZeroKeyPayloadIsNotTouched) {
    bytes wire;
    append_frame(wire, opcode::binary, bytes{1, 2, 3}, true, {});
    frame_decoder d(role::server);
    const decode_step s = d.feed(wire);
    ASSERT_EQ(s.err, errc::ok);
    ASSERT_EQ(s.payload, 3u);
    EXPECT_EQ(bytes(wire.begin(), wire.begin() + 3), (bytes{1, 2, 3}));
}

TEST(FrameDecoder, CloseMidStreamEndsIt) {
    for (std::size_t cut = 0; cut < 20; ++cut) {
        bytes wire;
        append_frame(wire, opcode::binary, bytes{'a', 'b'}, false);
        append_frame(wire, opcode::close, bytes{0x03, 0xe8, 'b', 'y', 'e'}, false);
        append_frame(wire, opcode::binary, bytes{'x'}, false);
        frame_decoder d(role::client);
        const outcome o = feed_pieces(d, wire, {std::min(cut, wire.size())});
        ASSERT_EQ(o.err, errc::ok);
        EXPECT_EQ(o.payload, (bytes{'a', 'b'})) << cut;
        EXPECT_TRUE(o.close);
        EXPECT_TRUE(d.closed());
        EXPECT_EQ(d.close_code(), close_code::normal);
    }
}

TEST(FrameDecoder, EmptyCloseReportsNoStatus) {
    bytes wire;
    append_frame(wire, opcode::close, bytes{}, true, {9, 9, 9, 9});
    frame_decoder d(role::server);
    const decode_step s = d.feed(wire);
    ASSERT_EQ(s.err, errc::ok);
    EXPECT_TRUE(s.close);
    EXPECT_EQ(d.close_code(), close_code::no_status);
}

TEST(FrameDecoder, MaskedCloseCodeIsUnmasked) {
    bytes wire;
    append_frame(wire, opcode::close, bytes{0x0f, 0xa0}, true, {0xaa, 0x55, 0, 0}); // 4000
    frame_decoder d(role::server);
    for (std::uint8_t& b : wire) {
        const decode_step s = d.feed(std::span(&b, 1));
        ASSERT_EQ(s.err, errc::ok);
    }
    EXPECT_TRUE(d.closed());
    EXPECT_EQ(d.close_code(), 4000);
}

struct bad_stream {
    bytes wire;
    role local;
    errc expected;
    const char* comment;
};

TEST(FrameDecoder, RejectsBadStreams) {
    const bad_stream cases[] = {
        {{0x81, 0x01, 'a'}, role::client, errc::text_frame, "text frame"},
        {{0x01, 0x01, 'a'}, role::client, errc::text_frame, "text first fragment"},
        {{0x80, 0x01, 'a'}, role::client, errc::bad_continuation, "continuation alone"},
        {{0x02, 0x01, 'a', 0x82, 0x00},
         role::client,
         errc::bad_continuation,
         "binary inside fragmented message"},
        {{0x88, 0x01, 0x01}, role::client, errc::bad_close_payload, "1-byte close"},
        {{0x88, 0x02, 0x03, 0xed}, role::client, errc::bad_close_code, "close 1005 on wire"},
        {{0x88, 0x02, 0x03, 0xe7}, role::client, errc::bad_close_code, "close 999"},
        {{0x88, 0x02, 0x13, 0x88}, role::client, errc::bad_close_code, "close 5000"},
        {{0x82, 0x00, 0xc2, 0x00}, role::client, errc::reserved_bits, "RSV after a frame"},
        {{0x82, 0x01}, role::server, errc::missing_mask, "unmasked to server"},
        {{0x89, 0x7e, 0x00, 0x7e}, role::client, errc::control_too_long, "126-byte ping"},
    };
    for (const auto& c : cases) {
        for (std::size_t cap : {1u, 2u, 100u}) {
            std::vector<std::size_t> cuts;
            for (std::size_t at = cap; at < c.wire.size(); at += cap) {
                cuts.push_back(at);
            }
            frame_decoder d(c.local);
            const outcome o = feed_pieces(d, c.wire, cuts);
            EXPECT_EQ(o.err, c.expected) << c.comment << " cap " << cap;
            // The failure is sticky.
            std::uint8_t more[] = {0x82, 0x00};
            EXPECT_EQ(d.feed(more).err, c.expected) << c.comment;
            EXPECT_EQ(d.error(), c.expected);
        }
    }
}

TEST(FrameDecoder, IdleOnlyBetweenFrames) {
    frame_decoder d(role::client);
    EXPECT_TRUE(d.idle());
    std::uint8_t head[] = {0x82};
    EXPECT_EQ(d.feed(head).payload, 0u);
    EXPECT_FALSE(d.idle());
    std::uint8_t rest[] = {0x02, 'a'};
    EXPECT_EQ(d.feed(rest).payload, 1u);
    EXPECT_FALSE(d.idle());
    std::uint8_t last[] = {'b'};
    EXPECT_EQ(d.feed(last).payload, 1u);
    EXPECT_TRUE(d.idle());
}

TEST(FrameDecoder, LastPingWins) {
    bytes wire;
    append_frame(wire, opcode::ping, bytes{1}, false);
    append_frame(wire, opcode::ping, bytes{2, 2}, false);
    append_frame(wire, opcode::ping, bytes(125, 3), false);
    frame_decoder d(role::client);
    const decode_step s = d.feed(wire);
    ASSERT_EQ(s.err, errc::ok);
    EXPECT_TRUE(s.ping);
    EXPECT_EQ(bytes(d.ping_payload().begin(), d.ping_payload().end()), bytes(125, 3));
}

} // namespace
} // namespace kaminari::codec

#include "kaminari/codec/mux_cool.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace kaminari::codec::mux {
namespace {

using bytes = std::vector<std::uint8_t>;

bytes cat(std::initializer_list<bytes> parts) {
    bytes out;
    for (const auto& p : parts) {
        out.insert(out.end(), p.begin(), p.end());
    }
    return out;
}

bytes payload(std::size_t n, std::uint8_t seed) {
    bytes out(n);
    for (std::size_t i = 0; i < n; ++i) {
        out[i] = static_cast<std::uint8_t>(seed + i * 7);
    }
    return out;
}

// What a parser reports over a whole stream, for comparison across splits.
struct parsed {
    std::vector<frame_meta> frames;
    std::vector<bytes> data; // payload per frame, in frame order
    error err = error::ok;
    bool idle = false;
};

parsed parse_in_chunks(const bytes& wire, std::size_t first, std::size_t chunk) {
    parser p;
    parsed out;
    std::size_t pos = 0;
    while (pos < wire.size()) {
        const std::size_t want = pos == 0 ? first : chunk;
        std::span<const std::uint8_t> in(wire.data() + pos, std::min(want, wire.size() - pos));
        pos += in.size();
        while (!in.empty()) {
            const auto step = p.feed(in);
            if (step.err != error::ok) {
                out.err = step.err;
                return out;
            }
            EXPECT_LE(step.consumed, in.size());
            EXPECT_NE(step.consumed, 0u);
            if (step.ev == event::frame) {
                out.frames.push_back(p.meta());
                out.data.emplace_back();
            } else if (step.ev == event::data) {
                out.data.back().insert(out.data.back().end(), in.begin(),
                                       in.begin() + static_cast<std::ptrdiff_t>(step.consumed));
            }
            in = in.subspan(step.consumed);
        }
    }
    out.idle = p.idle();
    return out;
}

// A v2ray-plugin client's session: New with its first payload (TCP 127.0.0.1:0), Keep with
// more, End; then a KeepAlive with data, an End with error for session 2.
const bytes new_head = {0x00, 0x0c, 0x00, 0x01, 0x01, 0x01, 0x01,
                        0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01};

bytes sample_stream() {
    const bytes first = payload(300, 1);
    const bytes more = payload(70, 9);
    return cat({new_head,
                {0x01, 0x2c},
                first, // New + 300 bytes
                {0x00, 0x04, 0x00, 0x01, 0x02, 0x01, 0x00, 0x46},
                more,                                                         // Keep + 70 bytes
                {0x00, 0x04, 0x00, 0x01, 0x03, 0x00},                         // End
                {0x00, 0x04, 0x00, 0x00, 0x04, 0x01, 0x00, 0x02, 0xaa, 0xbb}, // KeepAlive
                {0x00, 0x04, 0x00, 0x02, 0x03, 0x02}});                       // End, error
}

TEST(MuxCool, ParsesAClientSessionAtEverySplit) {
    const bytes wire = sample_stream();
    for (std::size_t first = 1; first <= wire.size(); ++first) {
        for (std::size_t chunk : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{7},
                                  std::size_t{64}, wire.size()}) {
            const parsed r = parse_in_chunks(wire, first, chunk);
            ASSERT_EQ(r.err, error::ok) << first << " " << chunk;
            ASSERT_EQ(r.frames.size(), 5u) << first << " " << chunk;
            EXPECT_TRUE(r.idle);
            const auto& n = r.frames[0];
            EXPECT_EQ(n.id, 1);
            EXPECT_EQ(n.st, status::new_session);
            EXPECT_TRUE(n.has_data());
            EXPECT_EQ(n.length, 300);
            EXPECT_EQ(n.net, network::tcp);
            EXPECT_EQ(n.port, 0);
            EXPECT_EQ(n.addr_type, address_type::ipv4);
            ASSERT_EQ(n.addr_size, 4);
            EXPECT_EQ(bytes(n.addr.begin(), n.addr.begin() + 4), (bytes{127, 0, 0, 1}));
            EXPECT_EQ(r.data[0], payload(300, 1));
            EXPECT_EQ(r.frames[1].st, status::keep);
            EXPECT_EQ(r.data[1], payload(70, 9));
            EXPECT_EQ(r.frames[2].st, status::end);
            EXPECT_FALSE(r.frames[2].has_error());
            EXPECT_TRUE(r.data[2].empty());
            EXPECT_EQ(r.frames[3].st, status::keep_alive);
            EXPECT_EQ(r.data[3], (bytes{0xaa, 0xbb}));
            EXPECT_EQ(r.frames[4].id, 2);
            EXPECT_TRUE(r.frames[4].has_error());
        }
    }
}

TEST(MuxCool, EveryTruncatedPrefixWaitsForMore) {
    const bytes wire = sample_stream();
    for (std::size_t n = 1; n < wire.size(); ++n) {
        const parsed r = parse_in_chunks(bytes(wire.begin(), wire.begin() + n), n, n);
        ASSERT_EQ(r.err, error::ok) << n;
    }
    // Inside the first frame the parser is not idle.
    for (std::size_t n = 1; n < new_head.size() + 2 + 300; ++n) {
        const parsed r = parse_in_chunks(bytes(wire.begin(), wire.begin() + n), n, n);
        EXPECT_FALSE(r.idle) << n;
    }
}

TEST(MuxCool, DomainAndIpv6AndTrailingMeta) {
    // New for "a.b" port 443, UDP, with 8 trailing bytes (Xray's XUDP global id), no data.
    const bytes domain = {0x00, 0x14, 0x00, 0x07, 0x01, 0x00, 0x02, 0x01, 0xbb, 0x02, 0x03,
                          'a',  '.',  'b',  1,    2,    3,    4,    5,    6,    7,    8};
    parsed r = parse_in_chunks(domain, 1, 1);
    ASSERT_EQ(r.err, error::ok);
    ASSERT_EQ(r.frames.size(), 1u);
    EXPECT_EQ(r.frames[0].net, network::udp);
    EXPECT_EQ(r.frames[0].port, 443);
    EXPECT_EQ(r.frames[0].addr_type, address_type::domain);
    EXPECT_EQ(std::string(r.frames[0].addr.begin(), r.frames[0].addr.begin() + 3), "a.b");
    EXPECT_FALSE(r.frames[0].has_data());
    EXPECT_TRUE(r.idle);

    bytes v6 = {0x00, 0x18, 0x00, 0x03, 0x01, 0x00, 0x01, 0x00, 0x50, 0x03};
    for (int i = 0; i < 16; ++i) {
        v6.push_back(static_cast<std::uint8_t>(i));
    }
    r = parse_in_chunks(v6, v6.size(), 1);
    ASSERT_EQ(r.err, error::ok);
    ASSERT_EQ(r.frames.size(), 1u);
    EXPECT_EQ(r.frames[0].addr_type, address_type::ipv6);
    EXPECT_EQ(r.frames[0].addr_size, 16);
    EXPECT_EQ(r.frames[0].addr[15], 15);
}

TEST(MuxCool, ZeroLengthDataAndUnknownOptionBits) {
    // Keep with the data bit and length 0: a frame, no data; option bits 0xfc are ignored.
    const bytes wire = {0x00, 0x04, 0x00, 0x05, 0x02, 0xfd, 0x00,
                        0x00, 0x00, 0x04, 0x00, 0x05, 0x03, 0x00};
    const parsed r = parse_in_chunks(wire, 3, 3);
    ASSERT_EQ(r.err, error::ok);
    ASSERT_EQ(r.frames.size(), 2u);
    EXPECT_TRUE(r.frames[0].has_data());
    EXPECT_EQ(r.frames[0].length, 0);
    EXPECT_TRUE(r.data[0].empty());
    EXPECT_EQ(r.frames[1].st, status::end);
    EXPECT_TRUE(r.idle);
}

TEST(MuxCool, BadFramesAreErrors) {
    struct bad {
        const char* what;
        bytes wire;
        error err;
    };
    const bad table[] = {
        {"metaLen 513", {0x02, 0x01}, error::bad_meta_length},
        {"metaLen 65535", {0xff, 0xff}, error::bad_meta_length},
        {"metaLen 3", {0x00, 0x03}, error::bad_meta_length},
        {"metaLen 0", {0x00, 0x00}, error::bad_meta_length},
        {"status 0", {0x00, 0x04, 0x00, 0x01, 0x00, 0x00}, error::bad_status},
        {"status 5", {0x00, 0x04, 0x00, 0x01, 0x05, 0x00}, error::bad_status},
        {"New in 7 bytes",
         {0x00, 0x07, 0x00, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00},
         error::bad_meta_length},
        {"network 3",
         {0x00, 0x0c, 0x00, 0x01, 0x01, 0x00, 0x03, 0x00, 0x00, 0x01, 1, 2, 3, 4},
         error::bad_network},
        {"network 0",
         {0x00, 0x0c, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 1, 2, 3, 4},
         error::bad_network},
        {"address type 4",
         {0x00, 0x0c, 0x00, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0x04, 1, 2, 3, 4},
         error::bad_address},
        {"address type 0",
         {0x00, 0x0c, 0x00, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 1, 2, 3, 4},
         error::bad_address},
        {"IPv4 past the meta",
         {0x00, 0x0b, 0x00, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 1, 2, 3},
         error::bad_address},
        {"IPv6 past the meta",
         {0x00, 0x0c, 0x00, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0x03, 1, 2, 3, 4},
         error::bad_address},
        {"empty domain",
         {0x00, 0x09, 0x00, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x00},
         error::bad_address},
        {"no domain length",
         {0x00, 0x08, 0x00, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02},
         error::bad_address},
        {"domain past the meta",
         {0x00, 0x0b, 0x00, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x03, 'a', 'b'},
         error::bad_address},
    };
    for (const auto& b : table) {
        // Whole, and byte by byte after a good frame: the error is found either way.
        parsed r = parse_in_chunks(b.wire, b.wire.size(), 1);
        EXPECT_EQ(r.err, b.err) << b.what;
        const bytes after = cat({{0x00, 0x04, 0x00, 0x09, 0x03, 0x00}, b.wire});
        r = parse_in_chunks(after, 1, 1);
        EXPECT_EQ(r.err, b.err) << b.what;
        EXPECT_EQ(r.frames.size(), 1u) << b.what;
    }
}

TEST(MuxCool, ErrorsAreSticky) {
    parser p;
    const bytes bad = {0x02, 0x01};
    EXPECT_EQ(p.feed(bad).err, error::bad_meta_length);
    const bytes good = {0x00, 0x04, 0x00, 0x01, 0x03, 0x00};
    const auto step = p.feed(good);
    EXPECT_EQ(step.err, error::bad_meta_length);
    EXPECT_EQ(step.consumed, 0u);
    EXPECT_EQ(p.last_error(), error::bad_meta_length);
}

TEST(MuxCool, EncodesKeepEndNew) {
    std::array<std::uint8_t, keep_head_size> keep{};
    encode_keep_head(keep, 0x0102, 0x0304);
    EXPECT_EQ(bytes(keep.begin(), keep.end()), (bytes{0, 4, 1, 2, 2, 1, 3, 4}));
    std::array<std::uint8_t, end_frame_size> end{};
    encode_end(end, 7, false);
    EXPECT_EQ(bytes(end.begin(), end.end()), (bytes{0, 4, 0, 7, 3, 0}));
    encode_end(end, 7, true);
    EXPECT_EQ(bytes(end.begin(), end.end()), (bytes{0, 4, 0, 7, 3, 2}));

    std::array<std::uint8_t, max_new_head_size> head{};
    const bytes lo = {127, 0, 0, 1};
    std::size_t n = encode_new_head(head, 1, network::tcp, 0, address_type::ipv4, lo, 300);
    EXPECT_EQ(bytes(head.begin(), head.begin() + static_cast<std::ptrdiff_t>(n)),
              cat({new_head, {0x01, 0x2c}}));
    n = encode_new_head(head, 1, network::tcp, 0, address_type::ipv4, lo, 0);
    EXPECT_EQ(n, 14u);
    EXPECT_EQ(head[5], 0); // no data bit

    const std::string name(255, 'x');
    const std::span<const std::uint8_t> name_bytes(
        reinterpret_cast<const std::uint8_t*>(name.data()), name.size());
    n = encode_new_head(head, 9, network::udp, 53, address_type::domain, name_bytes, 5);
    EXPECT_EQ(n, max_new_head_size);
    const bytes wire =
        cat({bytes(head.begin(), head.begin() + static_cast<std::ptrdiff_t>(n)), payload(5, 3)});
    const parsed r = parse_in_chunks(wire, 5, 5);
    ASSERT_EQ(r.err, error::ok);
    ASSERT_EQ(r.frames.size(), 1u);
    EXPECT_EQ(r.frames[0].addr_size, 255);
    EXPECT_EQ(r.frames[0].port, 53);
    EXPECT_EQ(r.data[0], payload(5, 3));
    EXPECT_EQ(detect(wire), verdict::mux);

    // Wrong address sizes and a short buffer are refused.
    EXPECT_EQ(encode_new_head(head, 1, network::tcp, 0, address_type::ipv6, lo, 0), 0u);
    EXPECT_EQ(encode_new_head(head, 1, network::tcp, 0, address_type::domain, {}, 0), 0u);
    EXPECT_EQ(
        encode_new_head(std::span(head).first(20), 1, network::tcp, 0, address_type::ipv4, lo, 0),
        0u);
}

TEST(MuxCool, DetectsNewFramesFromTheirFirstBytes) {
    const bytes wire = sample_stream();
    EXPECT_EQ(detect(wire), verdict::mux);
    // An IP address says nothing more once its type is known: up to the type byte, every
    // prefix asks for more.
    for (std::size_t n = 0; n < 10; ++n) {
        EXPECT_EQ(detect(std::span(wire).first(n)), verdict::need_more) << n;
    }
    EXPECT_EQ(detect(std::span(wire).first(10)), verdict::mux);
    // Without data, a domain, IPv6.
    EXPECT_EQ(detect(bytes{0x00, 0x0c, 0x00, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 1, 2, 3, 4}),
              verdict::mux);
    const bytes domain = {0x00, 0x0d, 0x00, 0x01, 0x01, 0x01, 0x01, 0x01,
                          0xbb, 0x02, 0x04, 'v',  '1',  '.',  'x'};
    EXPECT_EQ(detect(domain), verdict::mux);
    EXPECT_EQ(detect(std::span(domain).first(14)), verdict::need_more);
    bytes v6 = {0x00, 0x18, 0x00, 0x01, 0x01, 0x00, 0x02, 0x00, 0x35, 0x03};
    v6.resize(26);
    EXPECT_EQ(detect(v6), verdict::mux);
}

TEST(MuxCool, DetectsNewAfterEndFrames) {
    // v2ray's client ends a session whose app closed before its first payload with End (and
    // the error bit) without a New: a connection may open with such End frames.
    const bytes end_err = {0x00, 0x04, 0x00, 0x01, 0x03, 0x02};
    const bytes end_ok = {0x00, 0x04, 0x00, 0x02, 0x03, 0x00};
    const bytes v4 = {0x00, 0x0c, 0x00, 0x03, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 1, 2, 3, 4};
    const bytes wire = cat({end_err, end_ok, v4});
    EXPECT_EQ(detect(wire), verdict::mux);
    for (std::size_t n = 0; n < 12 + 10; ++n) {
        EXPECT_EQ(detect(std::span(wire).first(n)), verdict::need_more) << n;
    }
    EXPECT_EQ(detect(cat({end_err, {0x00, 0x04, 0x00, 0x02, 0x02}})), verdict::plain); // Keep
    EXPECT_EQ(detect(cat({end_err, {0x00, 0x04, 0x00, 0x02, 0x03, 0x01}})), verdict::plain);
    EXPECT_EQ(detect(cat({end_err, {0x41}})), verdict::plain);
    bytes many;
    for (std::size_t i = 0; i < max_leading_ends; ++i) {
        many = cat({many, end_err});
    }
    EXPECT_EQ(detect(cat({many, v4})), verdict::mux);
    EXPECT_EQ(detect(cat({many, end_err, v4})), verdict::plain);
    // The parser takes such a stream as it is: End for a session it does not know.
    const parsed r = parse_in_chunks(wire, 1, 1);
    ASSERT_EQ(r.err, error::ok);
    ASSERT_EQ(r.frames.size(), 3u);
    EXPECT_EQ(r.frames[2].st, status::new_session);
}

TEST(MuxCool, OnlyLeadingEndsIsWholeEndFramesAndNothingElse) {
    const bytes end_err = {0x00, 0x04, 0x00, 0x01, 0x03, 0x02};
    const bytes end_ok = {0x00, 0x04, 0x00, 0x02, 0x03, 0x00};
    EXPECT_TRUE(only_leading_ends(end_err));
    EXPECT_TRUE(only_leading_ends(cat({end_err, end_ok})));
    // detect() waits for more on such a stream: serve_if_mux() decides when it gives up.
    EXPECT_EQ(detect(cat({end_err, end_ok})), verdict::need_more);
    EXPECT_FALSE(only_leading_ends({}));
    // A frame cut short, a Keep, data or another option bit, or a New after them.
    EXPECT_FALSE(only_leading_ends(std::span(end_err).first(5)));
    EXPECT_FALSE(only_leading_ends(cat({end_err, {0x00}})));
    EXPECT_FALSE(only_leading_ends(bytes{0x00, 0x04, 0x00, 0x01, 0x02, 0x00}));
    EXPECT_FALSE(only_leading_ends(bytes{0x00, 0x04, 0x00, 0x01, 0x03, 0x01}));
    EXPECT_FALSE(only_leading_ends(bytes{0x00, 0x04, 0x00, 0x01, 0x03, 0x03}));
    EXPECT_FALSE(only_leading_ends(bytes{0x00, 0x05, 0x00, 0x01, 0x03, 0x00}));
    EXPECT_FALSE(only_leading_ends(
        cat({end_err, {0x00, 0x0c, 0x00, 0x03, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 1, 2, 3, 4}})));
    // As many as detect() lets through before a New, no more.
    bytes many;
    for (std::size_t i = 0; i < max_leading_ends; ++i) {
        many = cat({many, end_ok});
    }
    EXPECT_TRUE(only_leading_ends(many));
    EXPECT_FALSE(only_leading_ends(cat({many, end_ok})));
}

TEST(MuxCool, DetectRejectsEverythingElse) {
    const std::string http = "GET / HTTP/1.1\r\n";
    const std::span<const std::uint8_t> http_bytes(
        reinterpret_cast<const std::uint8_t*>(http.data()), http.size());
    EXPECT_EQ(detect(http_bytes), verdict::plain);
    const bytes table[] = {
        {0x03},                                                             // metaLen > 767
        {0x02, 0x01},                                                       // metaLen 513
        {0x00, 0x09},                                                       // too short for New
        {0x00, 0x0c, 0x00, 0x01, 0x02},                                     // Keep first
        {0x00, 0x0c, 0x00, 0x01, 0x01, 0x02},                               // error bit
        {0x00, 0x0c, 0x00, 0x01, 0x01, 0x04},                               // unknown bit
        {0x00, 0x0c, 0x00, 0x01, 0x01, 0x01, 0x03},                         // network 3
        {0x00, 0x0c, 0x00, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x04},       // address type 4
        {0x00, 0x0b, 0x00, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x01},       // IPv4 past meta
        {0x00, 0x17, 0x00, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x03},       // IPv6 past meta
        {0x00, 0x0c, 0x00, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x02, 0x00}, // empty domain
        {0x00, 0x0c, 0x00, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x02, 0x04}, // domain past meta
        {0x00, 0x0d, 0x00, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x02, 0x04, 'a', ' '}, // bad char
    };
    for (const auto& b : table) {
        EXPECT_EQ(detect(b), verdict::plain) << b.size();
    }
}

TEST(MuxCool, RandomSaltsAreNotMux) {
    // A shadowsocks stream opens with a random salt. The chance of `mux` per stream is about
    // 1.4e-11, so a million random openings must all be plain (most after 1 or 2 bytes).
    std::mt19937_64 rng(12);
    std::size_t decided_by_two = 0;
    bytes salt(32);
    for (int i = 0; i < 1'000'000; ++i) {
        for (auto& b : salt) {
            b = static_cast<std::uint8_t>(rng());
        }
        ASSERT_EQ(detect(salt), verdict::plain);
        decided_by_two += detect(std::span(salt).first(2)) == verdict::plain ? 1 : 0;
    }
    EXPECT_GT(decided_by_two, 990'000u);
}

} // namespace
} // namespace kaminari::codec::mux

#include "kaminari/codec/mask.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace kaminari::codec {
namespace {

void reference_mask(std::uint8_t* p, std::size_t n, const mask_key& key, std::size_t phase) {
    for (std::size_t i = 0; i < n; ++i) {
        p[i] ^= key[(phase + i) % 4];
    }
}

std::vector<std::uint8_t> pattern(std::size_t n) {
    std::vector<std::uint8_t> v(n);
    std::uint32_t x = 0x12345678;
    for (auto& b : v) {
        x = x * 1664525u + 1013904223u;
        b = static_cast<std::uint8_t>(x >> 24);
    }
    return v;
}

TEST(Mask, MatchesBytewiseReference) {
    const mask_key key{0xa1, 0x5c, 0x03, 0xfe};
    constexpr std::size_t max_len = 4096;
    const std::vector<std::uint8_t> src = pattern(max_len + 8);
    std::vector<std::uint8_t> got(max_len + 8);
    std::vector<std::uint8_t> want(max_len + 8);
    // Every length up to 300 (all word/tail combinations), then a dense sample up to 4096.
    std::vector<std::size_t> lengths;
    for (std::size_t n = 0; n <= 300; ++n) {
        lengths.push_back(n);
    }
    for (std::size_t n = 301; n <= max_len; n += 13) {
        lengths.push_back(n);
    }
    lengths.push_back(max_len);
    for (std::size_t n : lengths) {
        for (std::size_t phase = 0; phase < 4; ++phase) {
            for (std::size_t align = 0; align < 8; ++align) {
                got = src;
                want = src;
                const std::size_t next = apply_mask(std::span(got.data() + align, n), key, phase);
                reference_mask(want.data() + align, n, key, phase);
                ASSERT_EQ(next, (phase + n) % 4);
                ASSERT_EQ(got, want) << "length " << n << " phase " << phase << " align " << align;
            }
        }
    }
}

TEST(Mask, SplitAtAnyPointContinuesFromTheRightKeyByte) {
    const mask_key key{0x01, 0x20, 0x3c, 0xf4};
    const std::vector<std::uint8_t> src = pattern(200);
    std::vector<std::uint8_t> whole = src;
    apply_mask(whole, key, 0);
    for (std::size_t a = 0; a <= src.size(); ++a) {
        for (std::size_t b = a; b <= src.size(); b += 7) {
            std::vector<std::uint8_t> got = src;
            std::size_t phase = apply_mask(std::span(got.data(), a), key, 0);
            phase = apply_mask(std::span(got.data() + a, b - a), key, phase);
            apply_mask(std::span(got.data() + b, got.size() - b), key, phase);
            ASSERT_EQ(got, whole) << a << " " << b;
        }
    }
}

TEST(Mask, IsAnInvolution) {
    const mask_key key{0xde, 0xad, 0xbe, 0xef};
    const std::vector<std::uint8_t> src = pattern(1000);
    std::vector<std::uint8_t> v = src;
    apply_mask(v, key, 3);
    EXPECT_NE(v, src);
    apply_mask(v, key, 3);
    EXPECT_EQ(v, src);
}

TEST(Mask, ZeroKeyIsIdentity) {
    EXPECT_TRUE(is_zero(mask_key{}));
    EXPECT_FALSE(is_zero(mask_key{0, 0, 0, 1}));
    const std::vector<std::uint8_t> src = pattern(77);
    std::vector<std::uint8_t> v = src;
    EXPECT_EQ(apply_mask(v, mask_key{}, 2), (2u + 77u) % 4);
    EXPECT_EQ(v, src);
}

TEST(Mask, RfcExample) {
    // RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
    std::vector<std::uint8_t> v{'H', 'e', 'l', 'l', 'o'};
    apply_mask(v, mask_key{0x37, 0xfa, 0x21, 0x3d}, 0);
    EXPECT_EQ(v, (std::vector<std::uint8_t>{0x7f, 0x9f, 0x4d, 0x51, 0x58}));
}

} // namespace
} // namespace kaminari::codec

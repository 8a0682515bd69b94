#include "kaminari/net/mask_keys.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <set>

namespace kaminari::net {
namespace {

TEST(MaskKeys, SourceRefillsAndKeysDiffer) {
    mask_key_source source;
    std::set<codec::mask_key> seen;
    for (std::size_t i = 0; i < 3 * mask_key_source::batch + 1; ++i) {
        seen.insert(source.next());
    }
    // 193 random 32-bit keys: a repeat is possible but has probability ~4e-6.
    EXPECT_GE(seen.size(), 3 * mask_key_source::batch);
}

TEST(MaskKeys, ThreadSourceAndRandomBytes) {
    EXPECT_NE(next_mask_key(), next_mask_key());
    std::array<std::uint8_t, 32> a{};
    std::array<std::uint8_t, 32> b{};
    random_bytes(a);
    random_bytes(b);
    EXPECT_NE(a, b);
    random_bytes(std::span<std::uint8_t>()); // empty is fine
}

TEST(MaskKeys, NoncesAreFreshAcrossBatches) {
    // 100 nonces span several batches of 16: 128-bit random values, so all distinct, and none is
    // the wiped (all-zero) slot of a batch.
    std::set<std::array<std::uint8_t, 16>> seen;
    for (int i = 0; i < 100; ++i) {
        const auto n = next_nonce();
        EXPECT_NE(n, (std::array<std::uint8_t, 16>{}));
        seen.insert(n);
    }
    EXPECT_EQ(seen.size(), 100u);
}

} // namespace
} // namespace kaminari::net

#pragma once

// Big-endian loads and stores for wire integers (RFC 6455 §5.2 uses network byte order).
// Safe for unaligned input; each store returns the position after what it wrote
// (ngtcp2_conv.h style).

#include <cstdint>

namespace kaminari::codec {

/// Reads a big-endian 16-bit value from `p[0..2)`.
constexpr std::uint16_t load_u16be(const std::uint8_t* p) noexcept {
    return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

/// Reads a big-endian 64-bit value from `p[0..8)`.
constexpr std::uint64_t load_u64be(const std::uint8_t* p) noexcept {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
        v = (v << 8) | p[i];
    }
    return v;
}

/// Writes `v` big-endian to `p[0..2)`; returns `p + 2`.
constexpr std::uint8_t* store_u16be(std::uint8_t* p, std::uint16_t v) noexcept {
    p[0] = static_cast<std::uint8_t>(v >> 8);
    p[1] = static_cast<std::uint8_t>(v);
    return p + 2;
}

/// Writes `v` big-endian to `p[0..8)`; returns `p + 8`.
constexpr std::uint8_t* store_u64be(std::uint8_t* p, std::uint64_t v) noexcept {
    for (int i = 7; i >= 0; --i) {
        p[i] = static_cast<std::uint8_t>(v);
        v >>= 8;
    }
    return p + 8;
}

} // namespace kaminari::codec

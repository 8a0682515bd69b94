#include "kaminari/codec/mask.hpp"

#include <cassert>
#include <cstring>

namespace kaminari::codec {

std::size_t apply_mask(std::span<std::uint8_t> data, const mask_key& key,
                       std::size_t phase) noexcept {
    assert(phase < 4);
    // The key rotated to `phase`, repeated over 8 bytes in memory order, so that one word XOR
    // masks 8 payload bytes regardless of host endianness; 8 is a multiple of 4, so the phase
    // is the same at every word boundary.
    std::uint8_t rotated[8];
    for (std::size_t i = 0; i < 8; ++i) {
        rotated[i] = key[(phase + i) & 3];
    }
    std::uint64_t word;
    std::memcpy(&word, rotated, sizeof word);

    std::uint8_t* p = data.data();
    std::size_t n = data.size();
    // Four independent words per iteration give the vectoriser a 32-byte body.
    while (n >= 32) {
        std::uint64_t w[4];
        std::memcpy(w, p, sizeof w);
        w[0] ^= word;
        w[1] ^= word;
        w[2] ^= word;
        w[3] ^= word;
        std::memcpy(p, w, sizeof w);
        p += 32;
        n -= 32;
    }
    while (n >= 8) {
        std::uint64_t w;
        std::memcpy(&w, p, sizeof w);
        w ^= word;
        std::memcpy(p, &w, sizeof w);
        p += 8;
        n -= 8;
    }
    for (std::size_t i = 0; i < n; ++i) {
        p[i] ^= rotated[i];
    }
    return (phase + data.size()) & 3;
}

} // namespace kaminari::codec

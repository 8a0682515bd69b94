#pragma once

// RFC 6455 §5.3 client-to-server masking.
//
// Each payload byte i of a masked frame is XORed with key[i % 4]. A payload that arrives or is
// processed in pieces must continue from the right key byte: the position inside the key is
// the "phase" (0..3), which apply_mask() takes and returns.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace kaminari::codec {

/// How a client masks the frames it sends (`mask=` option).
enum class mask_mode : std::uint8_t {
    skip,     ///< mask bit set with an all-zero key: no masking work on either side (default)
    fixed,    ///< one random key for the whole connection
    standard, ///< a fresh random key for every frame (RFC 6455 as written)
};

/// The 4-byte masking key, in wire order.
using mask_key = std::array<std::uint8_t, 4>;

/// True when every byte of `key` is zero: masking with it is a no-op and may be skipped.
constexpr bool is_zero(const mask_key& key) noexcept {
    return (key[0] | key[1] | key[2] | key[3]) == 0;
}

/// XORs `data` in place with `key`, starting at key byte `phase` (0..3).
///
/// Works in 8-byte words (the compiler may vectorise the loop); any length and alignment.
/// Returns the phase for the byte that follows `data`: `(phase + data.size()) % 4`, so a
/// payload masked in pieces gives the same bytes as one call over the whole payload.
/// Precondition: `phase < 4`.
std::size_t apply_mask(std::span<std::uint8_t> data, const mask_key& key,
                       std::size_t phase) noexcept;

} // namespace kaminari::codec

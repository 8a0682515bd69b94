#pragma once

// RFC 4648 base64, as websocket early data uses it (Xray's `ed`): the client sends its first
// bytes in `Sec-WebSocket-Protocol` as unpadded URL-safe base64 (§5 alphabet, no padding,
// §3.2). The decoder is deliberately as lenient as Xray's server (which maps `+` to `-` and
// `/` to `_` and drops `=` before decoding with Go's RawURLEncoding):
// - either alphabet, even mixed: `A-Z a-z 0-9` plus `-` or `+` (62) and `_` or `/` (63);
// - optional `=` padding, only at the end and never more than the last quantum needs
//   (`QQ`, `QQ=` and `QQ==` are all one byte; `QUI==` and `QUJD=` are invalid);
// - a length that leaves a single character in the last quantum is invalid (6 bits are not a
//   byte); the unused low bits of the last character are ignored, as Go's decoder does.
// Nothing else is accepted: no whitespace, no line breaks.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace kaminari::codec {

/// Characters base64url_encode() writes for `n` bytes: ceil(4n / 3), no padding.
constexpr std::size_t base64url_encoded_size(std::size_t n) noexcept {
    return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

/// Encodes `in` with the URL-safe alphabet (`-`, `_`) and no padding (RFC 4648 §5, §3.2).
/// Precondition: `out.size() >= base64url_encoded_size(in.size())`. Returns the characters
/// written, base64url_encoded_size(in.size()).
std::size_t base64url_encode(std::span<const std::uint8_t> in, std::span<char> out) noexcept;

/// The number of bytes `text` decodes to under the rules above, or nullopt when it is not
/// valid base64 (an empty `text` is valid and decodes to 0 bytes).
std::optional<std::size_t> base64_decoded_size(std::string_view text) noexcept;

/// Decodes `text` into the front of `out`. Returns the bytes written, or nullopt when `text`
/// is not valid base64 or `out` is smaller than base64_decoded_size(text) (the contents of
/// `out` are then unspecified).
std::optional<std::size_t> base64_decode(std::string_view text,
                                         std::span<std::uint8_t> out) noexcept;

} // namespace kaminari::codec

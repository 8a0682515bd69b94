#include "kaminari/codec/base64.hpp"

#include <array>

namespace kaminari::codec {

namespace {

constexpr std::string_view url_alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

constexpr std::uint8_t invalid = 0xff;

// Character -> 6-bit value for both alphabets; `invalid` for anything else (and for '=').
constexpr std::array<std::uint8_t, 256> make_values() noexcept {
    std::array<std::uint8_t, 256> v{};
    v.fill(invalid);
    for (std::size_t i = 0; i < url_alphabet.size(); ++i) {
        v[static_cast<unsigned char>(url_alphabet[i])] = static_cast<std::uint8_t>(i);
    }
    v['+'] = 62;
    v['/'] = 63;
    return v;
}

constexpr std::array<std::uint8_t, 256> values = make_values();

// The characters before any padding, or npos when the padding or the length is invalid.
std::size_t data_length(std::string_view text) noexcept {
    std::size_t pad = 0;
    while (pad < text.size() && text[text.size() - 1 - pad] == '=') {
        ++pad;
    }
    const std::size_t n = text.size() - pad;
    // One character left in the last quantum carries 6 bits: not a whole byte (§4).
    if (n % 4 == 1) {
        return std::string_view::npos;
    }
    // Padding only fills the last quantum up to 4 characters, and may be shortened (Xray
    // drops it); never more than that, nor after a complete quantum (§3.2).
    if (pad > (4 - n % 4) % 4) {
        return std::string_view::npos;
    }
    return n;
}

} // namespace

std::size_t base64url_encode(std::span<const std::uint8_t> in, std::span<char> out) noexcept {
    std::size_t o = 0;
    std::size_t i = 0;
    for (; i + 3 <= in.size(); i += 3) {
        const std::uint32_t v = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8) |
                                std::uint32_t{in[i + 2]};
        out[o++] = url_alphabet[(v >> 18) & 0x3f];
        out[o++] = url_alphabet[(v >> 12) & 0x3f];
        out[o++] = url_alphabet[(v >> 6) & 0x3f];
        out[o++] = url_alphabet[v & 0x3f];
    }
    const std::size_t rest = in.size() - i;
    if (rest != 0) {
        std::uint32_t v = std::uint32_t{in[i]} << 16;
        if (rest == 2) {
            v |= std::uint32_t{in[i + 1]} << 8;
        }
        out[o++] = url_alphabet[(v >> 18) & 0x3f];
        out[o++] = url_alphabet[(v >> 12) & 0x3f];
        if (rest == 2) {
            out[o++] = url_alphabet[(v >> 6) & 0x3f];
        }
    }
    return o;
}

std::optional<std::size_t> base64_decoded_size(std::string_view text) noexcept {
    const std::size_t n = data_length(text);
    if (n == std::string_view::npos) {
        return std::nullopt;
    }
    for (char c : text.substr(0, n)) {
        if (values[static_cast<unsigned char>(c)] == invalid) {
            return std::nullopt;
        }
    }
    return n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1);
}

std::optional<std::size_t> base64_decode(std::string_view text,
                                         std::span<std::uint8_t> out) noexcept {
    const auto size = base64_decoded_size(text);
    if (!size || *size > out.size()) {
        return std::nullopt;
    }
    const std::size_t n = data_length(text);
    std::size_t o = 0;
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : text.substr(0, n)) {
        acc = (acc << 6) | values[static_cast<unsigned char>(c)];
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = static_cast<std::uint8_t>(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    // The 2 or 4 bits left over from a partial last quantum are ignored (Go does the same).
    return o;
}

} // namespace kaminari::codec

#include "kaminari/codec/base64.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kaminari::codec {
namespace {

using bytes = std::vector<std::uint8_t>;

bytes to_bytes(std::string_view s) {
    return {s.begin(), s.end()};
}

std::string encode(const bytes& in) {
    std::string out(base64url_encoded_size(in.size()), '?');
    EXPECT_EQ(base64url_encode(in, out), out.size());
    return out;
}

std::optional<bytes> decode(std::string_view text) {
    const auto size = base64_decoded_size(text);
    bytes out(size.value_or(0));
    const auto n = base64_decode(text, out);
    EXPECT_EQ(n.has_value(), size.has_value()) << text;
    if (!n) {
        return std::nullopt;
    }
    EXPECT_EQ(*n, *size) << text;
    return out;
}

// RFC 4648 §10 test vectors, in the unpadded URL-safe form and with padding.
TEST(Base64, Rfc4648Vectors) {
    struct row {
        std::string_view plain, unpadded, padded;
    };
    for (const row& r : std::initializer_list<row>{{"", "", ""},
                                                   {"f", "Zg", "Zg=="},
                                                   {"fo", "Zm8", "Zm8="},
                                                   {"foo", "Zm9v", "Zm9v"},
                                                   {"foob", "Zm9vYg", "Zm9vYg=="},
                                                   {"fooba", "Zm9vYmE", "Zm9vYmE="},
                                                   {"foobar", "Zm9vYmFy", "Zm9vYmFy"}}) {
        EXPECT_EQ(encode(to_bytes(r.plain)), r.unpadded) << r.plain;
        EXPECT_EQ(decode(r.unpadded), to_bytes(r.plain)) << r.unpadded;
        EXPECT_EQ(decode(r.padded), to_bytes(r.plain)) << r.padded;
    }
}

TEST(Base64, UrlSafeAlphabetOutStandardAndUrlSafeIn) {
    // 0xfb 0xff 0xbf: 62 and 63 in every position.
    const bytes b{0xfb, 0xff, 0xbf};
    EXPECT_EQ(encode(b), "-_-_");
    EXPECT_EQ(decode("-_-_"), b);
    EXPECT_EQ(decode("+/+/"), b); // standard alphabet (Xray maps it before decoding)
    EXPECT_EQ(decode("-/+_"), b); // even mixed
    EXPECT_EQ(encode(bytes{0xff}), "_w");
    EXPECT_EQ(decode("/w=="), bytes{0xff});
}

TEST(Base64, PaddingVariants) {
    // Full, shortened (Xray drops '=') and absent padding all decode; too much does not.
    EXPECT_EQ(decode("QQ"), to_bytes("A"));
    EXPECT_EQ(decode("QQ="), to_bytes("A"));
    EXPECT_EQ(decode("QQ=="), to_bytes("A"));
    EXPECT_EQ(decode("QUI"), to_bytes("AB"));
    EXPECT_EQ(decode("QUI="), to_bytes("AB"));
    for (std::string_view bad : {"QQ===", "QUI==", "QUJD=", "QUJD==", "=", "==", "===", "====",
                                 "Q=Q=", "QQ=A", "=QQ", "Q", "Q=", "Q==", "QUJDR", "QUJDR==="}) {
        EXPECT_FALSE(base64_decoded_size(bad)) << bad;
        EXPECT_FALSE(decode(bad)) << bad;
    }
}

TEST(Base64, InvalidAlphabet) {
    // Every byte that is not in either alphabet, in every position of a quantum.
    for (int c = 0; c < 256; ++c) {
        const char ch = static_cast<char>(c);
        const bool valid = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                           (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '+' ||
                           ch == '/';
        for (std::size_t pos = 0; pos < 4; ++pos) {
            std::string text = "QUJD";
            text[pos] = ch;
            if (ch == '=' && pos >= 2) {
                continue; // padding, tested above
            }
            EXPECT_EQ(base64_decoded_size(text).has_value(), valid) << c << " at " << pos;
        }
    }
    for (std::string_view bad : {"QUJD QUJD", "QUJD,QUJD", "QUJD\r\n", " QUJD", "QU\tJD", "QU.D"}) {
        EXPECT_FALSE(decode(bad)) << bad;
    }
}

TEST(Base64, IgnoresUnusedLowBits) {
    // "QR" and "QQ" differ only in bits that are not part of the byte (Go's decoder, too).
    EXPECT_EQ(decode("QR"), to_bytes("A"));
    EXPECT_EQ(decode("QUJ"), to_bytes("AB"));
}

TEST(Base64, EveryTruncationOfAToken) {
    // Each prefix of a valid unpadded token is valid exactly when its length mod 4 is not 1,
    // and then it decodes to a prefix of the original bytes.
    bytes b(64);
    for (std::size_t i = 0; i < b.size(); ++i) {
        b[i] = static_cast<std::uint8_t>(i * 37 + 11);
    }
    const std::string text = encode(b);
    for (std::size_t k = 0; k <= text.size(); ++k) {
        const auto got = decode(std::string_view(text).substr(0, k));
        if (k % 4 == 1) {
            EXPECT_FALSE(got) << k;
            continue;
        }
        ASSERT_TRUE(got) << k;
        EXPECT_EQ(*got, bytes(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(got->size())))
            << k;
        EXPECT_EQ(got->size(), k * 3 / 4) << k;
    }
}

TEST(Base64, RoundTripsEveryLengthUpTo2048) {
    for (std::size_t n = 0; n <= 2048; n += (n < 64 ? 1 : 61)) {
        bytes b(n);
        for (std::size_t i = 0; i < n; ++i) {
            b[i] = static_cast<std::uint8_t>((i * 131 + n) ^ (i >> 3));
        }
        const std::string text = encode(b);
        EXPECT_EQ(text.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                         "0123456789-_"),
                  std::string::npos);
        EXPECT_EQ(decode(text), b) << n;
    }
    // The largest early data a client sends: 2048 bytes, 2731 characters.
    bytes big(2048);
    for (std::size_t i = 0; i < big.size(); ++i) {
        big[i] = static_cast<std::uint8_t>(255 - i % 256);
    }
    const std::string text = encode(big);
    EXPECT_EQ(text.size(), 2731u);
    EXPECT_EQ(decode(text), big);
}

TEST(Base64, DecodeRefusesTooSmallAnOutput) {
    std::array<std::uint8_t, 3> out{};
    EXPECT_EQ(base64_decode("QUJD", out), std::optional<std::size_t>(3));
    EXPECT_FALSE(base64_decode("QUJDRA", out));
    EXPECT_FALSE(base64_decode("QUJD", std::span(out).first(2)));
    EXPECT_EQ(base64_decode("", std::span<std::uint8_t>()), std::optional<std::size_t>(0));
}

} // namespace
} // namespace kaminari::codec

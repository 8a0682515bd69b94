// The early data decoder (codec/base64.hpp) on arbitrary text, as kaminaris meets it in
// Sec-WebSocket-Protocol: decoded_size and decode must agree, the output must fit, and what
// decodes must survive an encode/decode round trip.

#include <kaminari/codec/base64.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace kaminari::codec;
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const auto want = base64_decoded_size(text);
    // Exactly the room it needs: any write past it is caught by ASan.
    std::vector<std::uint8_t> out(want.value_or(0));
    const auto got = base64_decode(text, out);
    if (got.has_value() != want.has_value() || (got && *got != *want)) {
        std::abort();
    }
    if (want && *want != 0 && base64_decode(text, std::span(out).first(*want - 1))) {
        std::abort(); // too small an output must be refused
    }
    if (got) {
        // Re-encoding yields canonical unpadded base64url that decodes to the same bytes.
        std::string again(base64url_encoded_size(out.size()), '\0');
        if (base64url_encode(out, again) != again.size()) {
            std::abort();
        }
        std::vector<std::uint8_t> back(out.size());
        const auto n = base64_decode(again, back);
        if (!n || *n != out.size() || back != out) {
            std::abort();
        }
    }
    // The input as bytes to encode: the encoding always decodes back to it.
    const std::span<const std::uint8_t> raw(data, size);
    std::string enc(base64url_encoded_size(size), '\0');
    if (base64url_encode(raw, enc) != enc.size()) {
        std::abort();
    }
    std::vector<std::uint8_t> dec(size);
    const auto m = base64_decode(enc, dec);
    if (!m || *m != size || !std::equal(dec.begin(), dec.end(), raw.begin())) {
        std::abort();
    }
    return 0;
}

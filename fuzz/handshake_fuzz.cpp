// The HTTP upgrade parsers on arbitrary bytes: requests as kaminaris sees them, responses as
// kaminaric sees them. `consumed` must stay within the input, a parsed key must point into it,
// and early data must point into it and decode.

#include <kaminari/codec/handshake.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace kaminari::codec;
    const std::span<const std::uint8_t> in(data, size);
    const request_result req = parse_request(in, "example.com", "/ws");
    // The fallback's early verdict never accepts what the full parser refuses, nor the reverse.
    const errc verdict = classify_request(in, "example.com", "/ws");
    if ((verdict == errc::ok) != (req.err == errc::ok)) {
        std::abort();
    }
    if (req.consumed > size) {
        std::abort();
    }
    if (req.err == errc::ok) {
        const auto* k = reinterpret_cast<const std::uint8_t*>(req.key.data());
        if (k < data || k + req.key.size() > data + size) {
            std::abort();
        }
        (void)make_sec_accept(req.key);
        if (!req.early_data.empty()) {
            // Early data points into the input and decodes to the size reported.
            const auto* e = reinterpret_cast<const std::uint8_t*>(req.early_data.data());
            if (e < data || e + req.early_data.size() > data + size || req.early_data_size == 0 ||
                req.early_data_size > max_early_data_size) {
                std::abort();
            }
            std::vector<std::uint8_t> out(req.early_data_size);
            const auto n = base64_decode(req.early_data, out);
            if (!n || *n != req.early_data_size) {
                std::abort();
            }
        }
    } else if (req.err != errc::need_more) {
        (void)response_status(req.err);
    }
    const response_result resp = parse_response(in, "dGhlIHNhbXBsZSBub25jZQ==");
    if (resp.consumed > size || resp.protocol_echoed) {
        std::abort();
    }
    const response_result offered = parse_response(in, "dGhlIHNhbXBsZSBub25jZQ==", "aGVsbG8");
    if (offered.consumed > size || (offered.protocol_echoed && offered.err != errc::ok)) {
        std::abort();
    }
    return 0;
}

// The HTTP upgrade parsers on arbitrary bytes: requests as kaminaris sees them, responses as
// kaminaric sees them. `consumed` must stay within the input, a parsed key must point into it.

#include <kaminari/codec/handshake.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace kaminari::codec;
    const std::span<const std::uint8_t> in(data, size);
    const request_result req = parse_request(in, "example.com", "/ws");
    if (req.consumed > size) {
        std::abort();
    }
    if (req.err == errc::ok) {
        const auto* k = reinterpret_cast<const std::uint8_t*>(req.key.data());
        if (k < data || k + req.key.size() > data + size) {
            std::abort();
        }
        (void)make_sec_accept(req.key);
    } else if (req.err != errc::need_more) {
        (void)response_status(req.err);
    }
    const response_result resp = parse_response(in, "dGhlIHNhbXBsZSBub25jZQ==");
    if (resp.consumed > size) {
        std::abort();
    }
    return 0;
}

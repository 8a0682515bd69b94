// The PROXY protocol header parser on arbitrary bytes: an accepted header never claims more
// bytes than were given, nor more than the cap; a text header ends at its CRLF.

#include <kaminari/codec/proxy_protocol.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace kaminari::codec;
    const proxy_header h = parse_proxy_header(std::span<const std::uint8_t>(data, size));
    if (h.st == proxy_header::status::ok) {
        if (h.size > size || h.size > max_proxy_header_size || h.size < 15) {
            std::abort();
        }
        if (h.version == 1 && (data[h.size - 2] != '\r' || data[h.size - 1] != '\n')) {
            std::abort();
        }
        // A prefix of an accepted header is never accepted, nor refused.
        const proxy_header p = parse_proxy_header(std::span<const std::uint8_t>(data, h.size - 1));
        if (p.st != proxy_header::status::need_more) {
            std::abort();
        }
    }
    return 0;
}

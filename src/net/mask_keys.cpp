#include "kaminari/net/mask_keys.hpp"

#include <openssl/err.h>
#include <openssl/rand.h>

#include <climits>
#include <stdexcept>
#include <string>

namespace kaminari::net {

void random_bytes(std::span<std::uint8_t> out) {
    while (!out.empty()) {
        const std::size_t n = out.size() < INT_MAX ? out.size() : INT_MAX;
        ERR_clear_error();
        if (RAND_bytes(out.data(), static_cast<int>(n)) != 1) {
            char reason[256] = "unknown error";
            if (const unsigned long e = ERR_get_error(); e != 0) {
                ERR_error_string_n(e, reason, sizeof reason);
            }
            throw std::runtime_error(std::string("RAND_bytes failed: ") + reason);
        }
        out = out.subspan(n);
    }
}

codec::mask_key mask_key_source::next() {
    if (next_ == batch) {
        random_bytes(bytes_);
        next_ = 0;
    }
    const std::uint8_t* p = bytes_.data() + next_++ * sizeof(codec::mask_key);
    return {p[0], p[1], p[2], p[3]};
}

codec::mask_key next_mask_key() {
    thread_local mask_key_source source;
    return source.next();
}

} // namespace kaminari::net

#include "kaminari/net/mask_keys.hpp"

#include <openssl/err.h>
#include <openssl/rand.h>

#include <algorithm>
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

std::array<std::uint8_t, 16> next_nonce() {
    constexpr std::size_t per_batch = 16;
    thread_local std::array<std::uint8_t, 16 * per_batch> bytes;
    thread_local std::size_t next = per_batch;
    if (next == per_batch) {
        random_bytes(bytes);
        next = 0;
    }
    std::array<std::uint8_t, 16> nonce;
    std::copy_n(bytes.begin() + static_cast<std::ptrdiff_t>(16 * next), 16, nonce.begin());
    // A nonce is handed out once: wipe it from the batch.
    std::fill_n(bytes.begin() + static_cast<std::ptrdiff_t>(16 * next), 16, std::uint8_t{0});
    ++next;
    return nonce;
}

} // namespace kaminari::net

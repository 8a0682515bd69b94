#include "kaminari/codec/frame_encoder.hpp"

namespace kaminari::codec {

std::span<const std::uint8_t> frame_encoder::encode(opcode op, std::span<std::uint8_t> payload,
                                                    const mask_key& frame_key) noexcept {
    frame_header h;
    h.fin = true;
    h.op = op;
    h.length = payload.size();
    // Every client frame is masked (§5.3); a server frame never is (§5.1).
    h.masked = role_ == role::client;
    if (h.masked) {
        switch (mode_) {
        case mask_mode::skip:
            h.key = mask_key{};
            break;
        case mask_mode::fixed:
            h.key = connection_key_;
            break;
        case mask_mode::standard:
            h.key = frame_key;
            break;
        }
        if (!is_zero(h.key)) {
            apply_mask(payload, h.key, 0);
        }
    }
    const std::size_t n = encode_header(h, head_);
    return {head_.data(), n};
}

} // namespace kaminari::codec

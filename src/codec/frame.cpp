#include "kaminari/codec/frame.hpp"

#include <kaminari/codec/bytes.hpp>

#include <cassert>

namespace kaminari::codec {

namespace {

constexpr bool is_known_opcode(std::uint8_t op) noexcept {
    return op <= 0x2 || (op >= 0x8 && op <= 0xA);
}

} // namespace

std::size_t encode_header(const frame_header& h,
                          std::span<std::uint8_t, max_header_size> out) noexcept {
    assert(h.length <= max_payload_length);
    assert(!is_control(h.op) || (h.fin && h.length <= max_control_payload));
    std::uint8_t* p = out.data();
    *p++ = static_cast<std::uint8_t>((h.fin ? 0x80 : 0x00) | static_cast<std::uint8_t>(h.op));
    const std::uint8_t mask_bit = h.masked ? 0x80 : 0x00;
    if (h.length <= 125) {
        *p++ = static_cast<std::uint8_t>(mask_bit | h.length);
    } else if (h.length <= 0xffff) {
        *p++ = static_cast<std::uint8_t>(mask_bit | 126);
        p = store_u16be(p, static_cast<std::uint16_t>(h.length));
    } else {
        *p++ = static_cast<std::uint8_t>(mask_bit | 127);
        p = store_u64be(p, h.length);
    }
    if (h.masked) {
        for (std::uint8_t b : h.key) {
            *p++ = b;
        }
    }
    return static_cast<std::size_t>(p - out.data());
}

decode_header_result decode_header(std::span<const std::uint8_t> in, role local) noexcept {
    if (in.size() < 2) {
        return {errc::need_more};
    }
    const std::uint8_t b0 = in[0];
    const std::uint8_t b1 = in[1];
    frame_header h;
    h.fin = (b0 & 0x80) != 0;
    h.op = static_cast<opcode>(b0 & 0x0f);
    h.masked = (b1 & 0x80) != 0;
    const std::uint8_t len7 = b1 & 0x7f;

    // RSV1-3 must be 0 unless an extension defines them; we negotiate none (§5.2).
    if ((b0 & 0x70) != 0) {
        return {errc::reserved_bits};
    }
    // Opcodes 0x3-0x7 and 0xB-0xF are reserved (§5.2).
    if (!is_known_opcode(b0 & 0x0f)) {
        return {errc::bad_opcode};
    }
    // Control frames must not be fragmented (§5.5).
    if (is_control(h.op) && !h.fin) {
        return {errc::fragmented_control};
    }
    // Control frames carry at most 125 bytes, so they never use an extended length (§5.5).
    if (is_control(h.op) && len7 > max_control_payload) {
        return {errc::control_too_long};
    }
    // A server must close the connection on an unmasked client frame (§5.1).
    if (local == role::server && !h.masked) {
        return {errc::missing_mask};
    }
    // A client must close the connection on a masked server frame (§5.1).
    if (local == role::client && h.masked) {
        return {errc::unexpected_mask};
    }

    const std::size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    const std::size_t size = 2 + ext + (h.masked ? 4 : 0);
    if (in.size() < size) {
        return {errc::need_more};
    }
    const std::uint8_t* p = in.data() + 2;
    if (len7 == 126) {
        h.length = load_u16be(p);
        // The minimal number of bytes must be used to encode the length (§5.2).
        if (h.length < 126) {
            return {errc::non_canonical_length};
        }
    } else if (len7 == 127) {
        h.length = load_u64be(p);
        // The most significant bit of a 64-bit length must be 0 (§5.2).
        if (h.length > max_payload_length) {
            return {errc::bad_length};
        }
        // The minimal number of bytes must be used to encode the length (§5.2).
        if (h.length <= 0xffff) {
            return {errc::non_canonical_length};
        }
    } else {
        h.length = len7;
    }
    p += ext;
    if (h.masked) {
        h.key = {p[0], p[1], p[2], p[3]};
    }
    return {errc::ok, h, size};
}

} // namespace kaminari::codec

#pragma once

// RFC 6455 §5.2 base framing: the frame header, encoded and decoded without I/O.
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +-+-+-+-+-------+-+-------------+-------------------------------+
//  |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//  |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//  |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//  | |1|2|3|       |K|             |                               |
//  +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//  |     Extended payload length continued, if payload len == 127  |
//  + - - - - - - - - - - - - - - - +-------------------------------+
//  |                               |Masking-key, if MASK set to 1  |
//  +-------------------------------+-------------------------------+
//  | Masking-key (continued)       |          Payload Data         |
//  +-------------------------------- - - - - - - - - - - - - - - - +
//
// A header is 2 to 14 bytes. Lengths 0..125 fit the 7-bit field, 126..65535 use the 16-bit
// extension (field = 126), larger ones the 64-bit extension (field = 127, top bit clear).

#include <kaminari/codec/errc.hpp>
#include <kaminari/codec/mask.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

namespace kaminari::codec {

/// Frame opcodes defined by RFC 6455 §5.2 (the others are reserved).
enum class opcode : std::uint8_t {
    continuation = 0x0,
    text = 0x1,
    binary = 0x2,
    close = 0x8,
    ping = 0x9,
    pong = 0xA,
};

/// The local endpoint's role. A server receives masked frames and sends unmasked ones; a
/// client does the opposite (§5.1).
enum class role : std::uint8_t { client, server };

/// The largest frame header: 2 + 8 (64-bit length) + 4 (masking key).
inline constexpr std::size_t max_header_size = 14;

/// The largest control frame payload (§5.5).
inline constexpr std::size_t max_control_payload = 125;

/// The largest payload length a frame may carry (§5.2: the top bit must be 0).
inline constexpr std::uint64_t max_payload_length = 0x7fff'ffff'ffff'ffffULL;

/// True for close, ping and pong (opcodes with the high bit set).
constexpr bool is_control(opcode op) noexcept {
    return (static_cast<std::uint8_t>(op) & 0x8) != 0;
}

/// A decoded or to-be-encoded frame header. RSV bits are always 0 (no extensions).
struct frame_header {
    bool fin = true;
    opcode op = opcode::binary;
    bool masked = false;
    mask_key key{}; ///< meaningful only when `masked`
    std::uint64_t length = 0;
};

/// Size of the encoded form of `h`: 2, 4, 6, 8, 10 or 14.
constexpr std::size_t header_size(const frame_header& h) noexcept {
    std::size_t n = 2;
    if (h.length > 0xffff) {
        n += 8;
    } else if (h.length > 125) {
        n += 2;
    }
    return h.masked ? n + 4 : n;
}

/// Writes `h` into `out` in the canonical (shortest) form; returns the bytes written,
/// `header_size(h)`. Preconditions: `h.length <= max_payload_length`; a control frame has
/// `fin` set and `length <= 125`.
std::size_t encode_header(const frame_header& h,
                          std::span<std::uint8_t, max_header_size> out) noexcept;

/// Result of decode_header().
struct decode_header_result {
    errc err = errc::ok;      ///< ok, need_more, or the rule the header breaks
    frame_header header{};    ///< valid when err == ok
    std::size_t consumed = 0; ///< header bytes when err == ok; 0 otherwise
};

/// Decodes one frame header from the front of `in` (which may hold payload after it).
///
/// `local` is the role of the endpoint that receives the frame. Returns `need_more` when `in`
/// ends before the header does (at most 13 bytes are then needed to be kept). Rejections,
/// each detected as soon as the bytes that show it are present:
/// `reserved_bits`, `bad_opcode`, `fragmented_control`, `control_too_long`, `missing_mask`
/// (server got an unmasked frame), `unexpected_mask` (client got a masked one), `bad_length`
/// (64-bit length with the top bit set), `non_canonical_length` (a length encoded in more
/// bytes than needed). Text frames are valid headers here; policy is frame_decoder's.
decode_header_result decode_header(std::span<const std::uint8_t> in, role local) noexcept;

} // namespace kaminari::codec

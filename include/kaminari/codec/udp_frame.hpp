#pragma once

// UDP datagrams inside a tunnel stream (SIP003u, `udp`): each datagram is a 2-byte big-endian
// length followed by that many bytes, the framing wss-proxy uses. Lengths run 0..65507 (the
// largest UDP payload over IPv4); a larger length is a protocol violation that ends the
// connection. Pure functions over bytes: no sockets, no allocation.
//
//     +--------+--------+------------------------------+
//     | len hi | len lo |  datagram (len bytes)         |
//     +--------+--------+------------------------------+

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace kaminari::codec {

/// Largest datagram carried: 65535 - 8 (UDP header) - 20 (IPv4 header).
inline constexpr std::size_t max_udp_datagram = 65'507;
/// Bytes of the length prefix.
inline constexpr std::size_t udp_header_size = 2;
/// Largest frame: prefix and datagram.
inline constexpr std::size_t max_udp_frame = udp_header_size + max_udp_datagram;

/// The first bytes a kaminaric UDP association sends on a `tls` (no websocket) connection,
/// ahead of its first frame: how kaminaris tells it from a TCP connection, whose app bytes
/// start at once. 16 fixed random bytes: an app stream that begins with them by chance is
/// taken for UDP (2^-128 for random data). Its first two bytes, read as a length prefix,
/// claim more than max_udp_datagram: a peer that is not told about the marker refuses it. A
/// `ws`/`wss` association says so in its upgrade request instead (udp_header in
/// codec/handshake.hpp).
inline constexpr std::array<std::uint8_t, 16> udp_stream_marker{
    0xff, 0xf7, 0xd4, 0x6e, 0x03, 0xa7, 0x5c, 0xe9, 0x21, 0xb6, 0x7d, 0x90, 0x4f, 0xc2, 0x38, 0x15};

/// Writes the length prefix for a datagram of `size` bytes into `out`. False (nothing written)
/// when `size` exceeds max_udp_datagram.
bool encode_udp_header(std::size_t size, std::span<std::uint8_t, udp_header_size> out) noexcept;

/// Writes prefix and `datagram` into `out`; returns the bytes written, or 0 when the datagram
/// is larger than max_udp_datagram or `out` is too small.
std::size_t encode_udp_frame(std::span<const std::uint8_t> datagram,
                             std::span<std::uint8_t> out) noexcept;

/// Outcome of decode_udp_frame().
enum class udp_frame_status : std::uint8_t {
    ok,        ///< a whole frame is at the front of the input
    need_more, ///< the input ends inside a frame: read more (`needed` says how much in all)
    too_large, ///< the prefix claims more than max_udp_datagram: end the connection
};

struct udp_frame_result {
    udp_frame_status status = udp_frame_status::need_more;
    std::span<const std::uint8_t> datagram{}; ///< when ok: points into the input
    /// ok: bytes of the frame (prefix + datagram) to drop from the input. need_more: bytes the
    /// whole frame will take (2 while the prefix itself is incomplete). too_large: 0.
    std::size_t size = 0;
};

/// Decodes the frame at the front of `in`.
udp_frame_result decode_udp_frame(std::span<const std::uint8_t> in) noexcept;

/// A printable name for `s` ("ok", "need more", "datagram too large").
std::string_view to_string(udp_frame_status s) noexcept;

} // namespace kaminari::codec

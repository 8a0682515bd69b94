#include "kaminari/codec/udp_frame.hpp"

#include <algorithm>

namespace kaminari::codec {

bool encode_udp_header(std::size_t size, std::span<std::uint8_t, udp_header_size> out) noexcept {
    if (size > max_udp_datagram) {
        return false;
    }
    out[0] = static_cast<std::uint8_t>(size >> 8);
    out[1] = static_cast<std::uint8_t>(size & 0xff);
    return true;
}

std::size_t encode_udp_frame(std::span<const std::uint8_t> datagram,
                             std::span<std::uint8_t> out) noexcept {
    if (datagram.size() > max_udp_datagram || out.size() < udp_header_size + datagram.size()) {
        return 0;
    }
    encode_udp_header(datagram.size(), out.first<udp_header_size>());
    std::copy(datagram.begin(), datagram.end(), out.begin() + udp_header_size);
    return udp_header_size + datagram.size();
}

udp_frame_result decode_udp_frame(std::span<const std::uint8_t> in) noexcept {
    if (in.size() < udp_header_size) {
        return {udp_frame_status::need_more, {}, udp_header_size};
    }
    const std::size_t len = (std::size_t{in[0]} << 8) | in[1];
    // A 16-bit length can claim up to 65535: the last 28 values are not a UDP payload.
    if (len > max_udp_datagram) {
        return {udp_frame_status::too_large, {}, 0};
    }
    const std::size_t total = udp_header_size + len;
    if (in.size() < total) {
        return {udp_frame_status::need_more, {}, total};
    }
    return {udp_frame_status::ok, in.subspan(udp_header_size, len), total};
}

std::string_view to_string(udp_frame_status s) noexcept {
    switch (s) {
    case udp_frame_status::ok:
        return "ok";
    case udp_frame_status::need_more:
        return "need more";
    case udp_frame_status::too_large:
        return "datagram too large";
    }
    return "?";
}

} // namespace kaminari::codec

#include "kaminari/codec/proxy_protocol.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <array>
#include <charconv>
#include <cstring>
#include <string_view>

namespace kaminari::codec {

namespace {

constexpr std::array<std::uint8_t, 12> v2_signature{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                    0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr std::string_view v1_prefix = "PROXY ";
constexpr std::size_t v1_max = 107; // including CRLF

proxy_header fail(int version, const char* why) {
    proxy_header h;
    h.st = proxy_header::status::invalid;
    h.version = version;
    h.reason = why;
    return h;
}

proxy_header more(int version, std::size_t want) {
    proxy_header h;
    h.version = version;
    h.size = want;
    return h;
}

// A decimal port: 0..65535, no sign, no leading zero (the spec's form).
bool parse_port(std::string_view s, std::uint16_t& port) {
    if (s.empty() || s.size() > 5 || (s.size() > 1 && s.front() == '0')) {
        return false;
    }
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v > 65535) {
        return false;
    }
    port = static_cast<std::uint16_t>(v);
    return true;
}

std::string format_source(int family, const void* addr, std::uint16_t port) {
    char text[INET6_ADDRSTRLEN] = {};
    if (inet_ntop(family, addr, text, sizeof text) == nullptr) {
        return {};
    }
    return family == AF_INET6 ? "[" + std::string(text) + "]:" + std::to_string(port)
                              : std::string(text) + ":" + std::to_string(port);
}

proxy_header parse_v1(std::string_view in) {
    const std::size_t crlf = in.substr(0, v1_max).find("\r\n");
    if (crlf == std::string_view::npos && in.size() >= v1_max) {
        return fail(1, "v1 line longer than 107 bytes");
    }
    // Printable ASCII up to the CRLF (a NUL would end an address early for inet_pton, and a
    // header must not be accepted whole yet refused in part); the CR of a CRLF still to come
    // may end the bytes so far.
    const std::size_t end = crlf == std::string_view::npos ? in.size() : crlf;
    for (std::size_t i = 0; i < end; ++i) {
        const auto u = static_cast<unsigned char>(in[i]);
        if (u >= 0x20 && u <= 0x7e) {
            continue;
        }
        if (crlf == std::string_view::npos && i + 1 == in.size() && in[i] == '\r') {
            continue;
        }
        return fail(1, "v1 line with a control or non-ASCII byte");
    }
    if (crlf == std::string_view::npos) {
        return more(1, in.size() + 1);
    }
    proxy_header h;
    h.version = 1;
    h.size = crlf + 2;
    std::string_view line = in.substr(v1_prefix.size(), crlf - v1_prefix.size());
    // Fields separated by single spaces.
    std::array<std::string_view, 5> f;
    std::size_t n = 0;
    while (n < f.size()) {
        const std::size_t sp = line.find(' ');
        f[n++] = line.substr(0, sp);
        if (sp == std::string_view::npos) {
            line = {};
            break;
        }
        line.remove_prefix(sp + 1);
    }
    if (n >= 1 && f[0] == "UNKNOWN") {
        h.st = proxy_header::status::ok; // the rest of the line is ignored
        return h;
    }
    if (n != 5 || !line.empty() || (f[0] != "TCP4" && f[0] != "TCP6")) {
        return fail(1, "v1 line is not 'PROXY TCP4|TCP6 src dst sport dport'");
    }
    const int family = f[0] == "TCP4" ? AF_INET : AF_INET6;
    std::array<std::uint8_t, 16> src{};
    std::array<std::uint8_t, 16> dst{};
    const std::string s(f[1]);
    const std::string d(f[2]);
    std::uint16_t sport = 0;
    std::uint16_t dport = 0;
    if (inet_pton(family, s.c_str(), src.data()) != 1 ||
        inet_pton(family, d.c_str(), dst.data()) != 1 || !parse_port(f[3], sport) ||
        !parse_port(f[4], dport)) {
        return fail(1, "v1 line with a bad address or port");
    }
    h.source = format_source(family, src.data(), sport);
    h.st = proxy_header::status::ok;
    return h;
}

proxy_header parse_v2(std::span<const std::uint8_t> in) {
    if (in.size() < 16) {
        return more(2, 16);
    }
    const std::uint8_t ver_cmd = in[12];
    const std::uint8_t fam = in[13];
    const std::size_t len = (std::size_t{in[14]} << 8) | in[15];
    if ((ver_cmd >> 4) != 2) {
        return fail(2, "v2 header with a version other than 2");
    }
    const std::uint8_t cmd = ver_cmd & 0x0F;
    if (cmd > 1) {
        return fail(2, "v2 header with an unknown command");
    }
    if (16 + len > max_proxy_header_size) {
        return fail(2, "v2 header longer than 4096 bytes");
    }
    if (in.size() < 16 + len) {
        return more(2, 16 + len);
    }
    proxy_header h;
    h.version = 2;
    h.size = 16 + len;
    h.st = proxy_header::status::ok;
    if (cmd == 0) {
        return h; // LOCAL: the balancer's own connection (a health check); real endpoints
    }
    const std::uint8_t family = fam >> 4;
    const std::uint8_t transport = fam & 0x0F;
    if (transport > 2) {
        return fail(2, "v2 header with an unknown transport");
    }
    const auto* a = in.data() + 16;
    if (family == 1) { // IPv4: src, dst, sport, dport
        if (len < 12) {
            return fail(2, "v2 IPv4 header shorter than its addresses");
        }
        h.source = format_source(AF_INET, a, static_cast<std::uint16_t>((a[8] << 8) | a[9]));
    } else if (family == 2) { // IPv6
        if (len < 36) {
            return fail(2, "v2 IPv6 header shorter than its addresses");
        }
        h.source = format_source(AF_INET6, a, static_cast<std::uint16_t>((a[32] << 8) | a[33]));
    } else if (family > 3) {
        return fail(2, "v2 header with an unknown address family");
    }
    // UNSPEC and unix sockets: no IP address; the connection's own peer stands.
    return h;
}

} // namespace

proxy_header parse_proxy_header(std::span<const std::uint8_t> in) noexcept {
    try {
        // v2: its 12-byte signature, compared over what has arrived.
        const std::size_t n2 = std::min(in.size(), v2_signature.size());
        if (n2 != 0 && std::equal(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(n2),
                                  v2_signature.begin())) {
            return parse_v2(in);
        }
        const std::string_view text(reinterpret_cast<const char*>(in.data()), in.size());
        const std::size_t n1 = std::min(text.size(), v1_prefix.size());
        if (text.substr(0, n1) == v1_prefix.substr(0, n1)) {
            if (text.size() < v1_prefix.size()) {
                return more(0, v1_prefix.size());
            }
            return parse_v1(text);
        }
        if (in.empty()) {
            return more(0, 1);
        }
        return fail(0, "no PROXY header");
    } catch (...) {
        return fail(0, "out of memory"); // std::string allocations
    }
}

} // namespace kaminari::codec

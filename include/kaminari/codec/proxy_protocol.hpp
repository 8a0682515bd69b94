#pragma once

// The PROXY protocol header (HAProxy's doc/proxy-protocol.txt, versions 1 and 2) that a load
// balancer (HAProxy `send-proxy`/`send-proxy-v2`, nginx `proxy_protocol on`) puts in front of
// a connection to say whom it came from. Pure: bytes in, result out; no sockets.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace kaminari::codec {

/// Most bytes a header may take here: a v1 line is at most 107; a v2 header is 16 bytes plus
/// its length, addresses and TLVs (HAProxy sends a few hundred at most). Longer is refused.
inline constexpr std::size_t max_proxy_header_size = 4096;

/// Outcome of parse_proxy_header().
struct proxy_header {
    enum class status : std::uint8_t {
        need_more, ///< a prefix of a valid header: read more (at least `want` bytes in all)
        ok,        ///< a complete header of `size` bytes
        invalid,   ///< not a PROXY header, or a malformed one: refuse the connection
    };
    status st = status::need_more;
    std::size_t size = 0; ///< ok: the header's length; need_more: bytes needed in all (a hint)
    int version = 0;      ///< 1 or 2, once known
    /// ok: the client's address as `1.2.3.4:5678` or `[::1]:5678`, empty when the header
    /// carries none (v1 UNKNOWN, v2 LOCAL or an address family other than TCP/UDP over IP):
    /// the connection's own peer then stands.
    std::string source;
    const char* reason = ""; ///< invalid: why, for the log
};

/// Parses the PROXY header at the front of `in` (v1 text or v2 binary, told apart by their
/// first bytes). Never reads past the header: the bytes after it belong to the connection.
proxy_header parse_proxy_header(std::span<const std::uint8_t> in) noexcept;

} // namespace kaminari::codec

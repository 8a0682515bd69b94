#pragma once

// Connecting to the remote.

#include <kaminari/cli.hpp>
#include <kaminari/net/stream.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <utility>

namespace kaminari::net {

struct dial_options {
    /// TCP Fast Open (TCP_FASTOPEN_CONNECT): the connect completes at once and the first write
    /// goes out in the SYN, once the kernel holds a cookie for the server. Only for a caller
    /// that writes first: until it writes, nothing is sent and nothing can be read.
    bool fast_open = false;
};

/// Resolves `remote` (every time, so DNS changes are followed) and connects to the first of its
/// addresses that accepts, within `limit` (asio::error::timed_out after it). The socket has
/// TCP_NODELAY and, unless the address is on this host (on_this_host()), keepalive
/// (tune_socket) from before its SYN. In VPN mode (enable_protect(),
/// net/protect.hpp) every socket is protected before its connect; a failure there ends the
/// attempt with a protect_errc.
asio::awaitable<std::pair<error_code, asio::ip::tcp::socket>>
connect_remote(endpoint remote, std::chrono::milliseconds limit, dial_options opts = {});

} // namespace kaminari::net

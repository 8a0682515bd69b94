#pragma once

// Zero-copy relay for two plain TCP sockets: splice(2) moves bytes socket -> pipe -> socket
// inside the kernel, so no payload is copied to user space and no payload buffer is held.

#include <kaminari/net/relay.hpp>

#include <boost/asio/ip/tcp.hpp>

namespace kaminari::net {

/// Relays `a` <-> `b` until both directions have ended, with the same half-close and error
/// behaviour as relay(): end of stream shuts down the other socket's write side; an error
/// closes both. A direction's pipe is created on its first readable event, so an idle
/// connection holds no pipe. Falls back to copying when the kernel refuses splice.
asio::awaitable<relay_result> splice_relay(asio::ip::tcp::socket& a, asio::ip::tcp::socket& b);

} // namespace kaminari::net

#pragma once

// kaminaris `proxy_protocol`: reads the PROXY protocol header a load balancer sends before a
// connection's own bytes (codec/proxy_protocol.hpp parses it).

#include <kaminari/codec/proxy_protocol.hpp>
#include <kaminari/net/stream.hpp>

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <utility>

namespace kaminari::net {

/// Reads the PROXY header at the front of `socket`, byte-exactly: what follows it (a TLS
/// ClientHello, an upgrade request) stays in the socket for the next layer. Gives up after
/// `limit`. Returns an error (asio::error::timed_out, eof, the socket's) or the parsed header,
/// whose status is ok or invalid (then `reason` says why), never need_more.
asio::awaitable<std::pair<error_code, codec::proxy_header>>
read_proxy_header(asio::ip::tcp::socket& socket, std::chrono::milliseconds limit);

} // namespace kaminari::net

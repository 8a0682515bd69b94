#pragma once

// kaminaric's UDP half (`udp`, SIP003u): UDP sockets on the local address (the same port as
// TCP). Each client source address is an association with a tunnel connection of its own,
// opened at its first datagram: ws and wss say so in the upgrade request (`Kaminari-Udp: 1`),
// tls sends codec::udp_stream_marker first. Datagrams queue (bounded) while the connection
// opens or is busy; replies are sent back to the source address from the same socket. An
// association ends when its connection ends or after `udp_timeout` without a datagram either
// way; the next datagram from that address opens a new one.

#include <kaminari/cli.hpp>
#include <kaminari/net/tunnel.hpp>

#include <boost/asio/io_context.hpp>

#include <memory>

namespace kaminari::net {

class udp_client;

/// Binds UDP on every address `local` resolves to and starts serving on `ctx` (all
/// associations run on its thread). Throws startup_error naming the address when none can be
/// bound. `cfg` must outlive the result; destroy the result before `ctx`.
std::shared_ptr<udp_client> start_udp_client(asio::io_context& ctx, const endpoint& local,
                                             const client_config& cfg);

/// Closes the sockets and ends every association. Call from `ctx`'s thread or once it stopped.
void stop_udp_client(udp_client& c) noexcept;

} // namespace kaminari::net

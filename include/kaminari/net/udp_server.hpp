#pragma once

// kaminaris's UDP half (`udp`): a tunnel connection that opened a UDP association (ws/wss: the
// upgrade request's `Kaminari-Udp: 1`; tls: codec::udp_stream_marker as its first bytes) gets a
// UDP socket of its own connected to the remote. Datagrams from the stream go out of it, its
// replies go back over the stream, until either side ends or nothing moves for `udp_timeout`.

#include <kaminari/net/tls_stream.hpp>
#include <kaminari/net/tunnel.hpp>
#include <kaminari/net/ws_stream.hpp>

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>

namespace kaminari::net {

/// Serves the association on `s` (open, handshakes done) to its end, then closes `s`. Without
/// `udp` in `cfg`, or at the association cap, logs and closes at once. Never throws on
/// network errors. `s` and `cfg` must outlive the coroutine.
asio::awaitable<void> serve_udp_association(ws_stream<tcp_stream>& s, std::uint64_t id,
                                            const server_config& cfg);
asio::awaitable<void> serve_udp_association(ws_stream<tls_stream<tcp_stream>>& s, std::uint64_t id,
                                            const server_config& cfg);
asio::awaitable<void> serve_udp_association(tls_stream<tcp_stream>& s, std::uint64_t id,
                                            const server_config& cfg);

/// How long kaminaris (`tls` with `udp`) waits after the TLS handshake for a connection's first
/// bytes to tell a UDP association (codec::udp_stream_marker) from a TCP connection. Bytes
/// that are not the marker start a TCP connection at once; an app that waits for the server to
/// speak first is connected after this wait.
inline constexpr std::chrono::milliseconds udp_marker_wait{200};

/// `tls` with `udp`: tells from the first bytes on `s` whether it is a UDP association (then
/// serves it) or a TCP connection (then connects to the remote, delivers the bytes read, and
/// relays as usual, with `idle_timeout`). Closes `s` at the end.
asio::awaitable<void> serve_tls_udp_or_tcp(tls_stream<tcp_stream>& s, std::uint64_t id,
                                           const server_config& cfg);

} // namespace kaminari::net

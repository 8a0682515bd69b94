#pragma once

// The options every tunnel socket gets, accepted or dialed.

#include <kaminari/net/stream.hpp>

#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <optional>

namespace kaminari::net {

/// TCP keepalive timing on every socket: the first probe after this long without traffic,
/// then one every keepalive_interval; keepalive_probes unanswered probes drop the connection.
/// A peer that vanished (a laptop closed, a NAT mapping dropped) is noticed within about two
/// minutes instead of the kernel's default of over two hours.
inline constexpr int keepalive_idle_s = 60;
inline constexpr int keepalive_interval_s = 15;
inline constexpr int keepalive_probes = 4;

/// Sets TCP_NODELAY and, with `keepalive`, SO_KEEPALIVE with the timing above; errors are
/// ignored (the socket may already be dead).
void tune_socket(asio::ip::tcp::socket& socket, bool keepalive = true) noexcept;

/// Whether `a` is this host's loopback (127.0.0.0/8, ::1, or 127.x as a v4-mapped v6 address).
/// A peer there needs no keepalive: it cannot vanish behind a network that went away, and when
/// its process dies, our own kernel closes its connections. So the sockets dialed to such a
/// peer (kaminaris's target as a shadowsocks plugin, ss-server on 127.0.0.1) skip the four
/// keepalive setsockopt calls.
bool on_this_host(const asio::ip::address& a) noexcept;

/// The options of a socket about to connect to `remote`: tune_socket(), with keepalive unless
/// `remote` is on this host (on_this_host()).
void tune_dialed(asio::ip::tcp::socket& socket, const asio::ip::tcp::endpoint& remote) noexcept;

/// The same options on a listening socket, before listen(): the sockets it accepts inherit
/// them (Linux copies them at accept), so an accepted connection needs no setsockopt of its own.
void tune_listener(asio::ip::tcp::acceptor& acceptor) noexcept;

/// How long a TCP connection has been quiet, from the kernel (TCP_INFO): milliseconds since
/// data last came in and since data last went out.
struct quiet_time {
    std::uint32_t since_in_ms = 0;
    std::uint32_t since_out_ms = 0;
};

/// The quiet times of `s`; nullopt once it is closed.
std::optional<quiet_time> quiet_times(asio::ip::tcp::socket& s) noexcept;

} // namespace kaminari::net

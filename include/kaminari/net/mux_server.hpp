#pragma once

// kaminaris's side of Mux.Cool (net/mux_link.hpp): v2ray-plugin clients multiplex their
// connections as sessions over one websocket by default (`mux=1`). After the websocket
// handshake, the first bytes from the client tell a Mux.Cool connection (a well-formed New
// frame) from a plain stream; a Mux.Cool connection is then served as a mux_connection, each
// session with a TCP connection of its own to the configured remote. `idle_timeout` and
// `ping` do not apply to Mux.Cool connections.

#include <kaminari/net/mux_link.hpp>
#include <kaminari/net/tunnel.hpp>

namespace kaminari::net {

/// How long a client that is not kaminaric may stay silent after the target has spoken first
/// before its stream is taken as plain (a v2ray client sends its New within about 100 ms).
inline constexpr std::chrono::milliseconds mux_detect_grace{1000};

/// What serve_if_mux() did.
struct mux_outcome {
    bool handled = false;      ///< the connection is over (served as Mux.Cool, or failed)
    std::size_t forwarded = 0; ///< not handled: bytes of the client's already written to target
};

/// Runs after the websocket server handshake on `ws`, with `target` connected to the remote.
/// With `cfg.opts.mux` off, or for kaminaric (Kaminari-Half-Close: its Mux.Cool says
/// Kaminari-Mux, see serve_mux()), returns at once (not handled). Otherwise waits for the
/// client's first bytes and asks codec::mux::detect(): a New frame makes it a Mux.Cool
/// connection, served here until it ends (`target` becomes its first session's connection;
/// handled). Anything else is a plain stream: the bytes read are written to `target` and the
/// caller relays as usual (not handled). A client that sends nothing is plain once the target
/// has spoken and the client stayed silent for mux_detect_grace more, or after `idle_timeout`
/// when one is set; but a client that sent only End frames by then is Mux.Cool
/// (codec::mux::only_leading_ends()), and its sessions dial targets of their own. An end of
/// stream before any byte is plain too (the relay sees it again). Errors are logged and close
/// both streams (handled). `ws`, `target` and `cfg` must outlive the call.
template <byte_stream Lower>
asio::awaitable<mux_outcome> serve_if_mux(ws_stream<Lower>& ws, tcp_stream& target,
                                          std::uint64_t id, const server_config& cfg);

/// Serves `link` as Mux.Cool from its first byte, as kaminaric said (a websocket's request
/// with `Kaminari-Mux: 1`, or a TLS connection that settled on codec::mux::tls_alpn),
/// whatever `cfg.opts.mux` says: every session dials the remote. `link` and `cfg` must
/// outlive the call.
template <byte_stream Link>
asio::awaitable<void> serve_mux(Link& link, std::uint64_t id, const server_config& cfg);

} // namespace kaminari::net

#include <kaminari/net/impl/mux_server.hpp>

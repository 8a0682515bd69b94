#pragma once

// One tunnel connection from accept to close: the layers each side stacks on its TCP socket
// (tcp -> tls? -> ws?), their handshakes under one deadline, and the relay.

#include <kaminari/cli.hpp>
#include <kaminari/net/stream.hpp>
#include <kaminari/options.hpp>
#include <kaminari/tls/context.hpp>

#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <optional>

namespace kaminari::net {

/// Everything kaminaric's connections share; built once before serving, read-only afterwards.
struct client_config {
    endpoint remote;
    client_options opts;
    std::optional<tls::client_context> tls; ///< set when opts.tls is
};

/// Everything kaminaris's connections share; built once before serving, read-only afterwards.
struct server_config {
    endpoint remote;
    server_options opts;
    std::optional<tls::server_context> tls; ///< set when opts.tls is
};

/// kaminaric: plain TCP from the app on `socket`; connects to the remote, runs the TLS and
/// websocket client handshakes, relays. `cfg` must outlive the coroutine. Never throws on
/// network errors; failures are logged with the connection id.
asio::awaitable<void> client_connection(asio::ip::tcp::socket socket, std::uint64_t id,
                                        const client_config& cfg);

/// kaminaris: runs the TLS and websocket server handshakes on `socket`, then connects to the
/// target and relays. `cfg` must outlive the coroutine.
asio::awaitable<void> server_connection(asio::ip::tcp::socket socket, std::uint64_t id,
                                        const server_config& cfg);

} // namespace kaminari::net

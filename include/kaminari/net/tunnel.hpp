#pragma once

// One tunnel connection from accept to close: the layers each side stacks on its TCP socket
// (tcp -> tls? -> ws?), their handshakes under one deadline, and the relay.

#include <kaminari/cli.hpp>
#include <kaminari/net/runtime.hpp>
#include <kaminari/net/stream.hpp>
#include <kaminari/options.hpp>
#include <kaminari/tls/context.hpp>
#include <kaminari/tls/reloadable.hpp>

#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <memory>
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
    std::optional<tls::reloadable_server_context> tls; ///< set when opts.tls is
};

/// What kaminaric keeps ready on each worker, used on that worker's thread: warm connections
/// (`pool=<n>`), Mux.Cool links (`mux=<n>`), or for tls and wss without either (and without
/// `0rtt`) the next connection's TLS engine with its ClientHello made (tls::hello_ahead).
class client_pools;

/// Starts what `cfg` keeps ready on every worker of `rt` (nullptr when nothing: tcp and ws
/// without pool or mux, and 0rtt without them). With `pool=<n>`, each worker keeps
/// ceil(n / workers) connections. Destroy the result once the workers have stopped (handlers
/// posted to them point into it) and before `rt` (its connections belong to the workers'
/// io_contexts), after stop_client_pools().
std::shared_ptr<client_pools> start_client_pools(const client_config& cfg, runtime& rt);

/// Closes every waiting connection. Call once the workers have stopped.
void stop_client_pools(client_pools& pools) noexcept;

/// kaminaric: plain TCP from the app on `socket`; takes a warm connection from `pools` (may be
/// nullptr) or connects to the remote, runs the TLS (on an engine made ahead, when `pools` has
/// one for this worker) and websocket client handshakes, relays.
/// `cfg` and `pools` must outlive the coroutine. Never throws on network errors; failures are
/// logged with the connection id.
asio::awaitable<void> client_connection(asio::ip::tcp::socket socket, std::uint64_t id,
                                        const client_config& cfg, client_pools* pools);

/// kaminaris: runs the TLS and websocket server handshakes on `socket`, then connects to the
/// target and relays. `cfg` must outlive the coroutine.
asio::awaitable<void> server_connection(asio::ip::tcp::socket socket, std::uint64_t id,
                                        const server_config& cfg);

} // namespace kaminari::net

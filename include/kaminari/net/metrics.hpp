#pragma once

// `metrics=<host:port>`: counters kept per thread (a relaxed add on the thread's own cache
// line, no lock, nothing per byte: byte counts are added once per connection, when it ends)
// and summed when Prometheus scrapes `GET /metrics` on a listener of their own.

#include <kaminari/cli.hpp>
#include <kaminari/net/runtime.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kaminari::net::metrics {

enum counter : std::size_t {
    accepted,         ///< connections accepted on the tunnel's listener
    refused,          ///< closed at once because max_conns was reached
    closed,           ///< tunnel connections ended after their relay ran
    idle_closed,      ///< ... of them closed by idle_timeout
    tls_failed,       ///< TLS handshakes that failed
    websocket_failed, ///< websocket handshakes that failed (refused, timed out, bad answers)
    connect_failed,   ///< connects to the remote (or the fallback) that failed
    bytes_upstream,   ///< bytes from the accepting side towards the remote
    bytes_downstream, ///< bytes from the remote back to the accepting side
    pool_warm,        ///< kaminaric, with pool: app connections started on a ready connection
    pool_dialed,      ///< ... that found none ready on any worker and dialed
    pool_handed_over, ///< ... moved to another worker that had one ready
    count_,
};

/// Adds `n` to `c` in the calling thread's slot.
void add(counter c, std::uint64_t n = 1) noexcept;

/// Every counter summed over all threads.
std::array<std::uint64_t, count_> snapshot();

/// The Prometheus text exposition (format 0.0.4) of the counters and `active` connections,
/// every series labelled with the program and its transport.
std::string render(std::string_view program, std::string_view transport, std::size_t active);

/// Serves `GET /metrics` on `where` (anything else gets 404) from the runtime's main context,
/// until it stops. Throws std::system_error if the address cannot be bound.
void start_server(runtime& rt, const endpoint& where, std::string program, std::string transport);

} // namespace kaminari::net::metrics

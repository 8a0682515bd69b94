#pragma once

// Listening: binding the local address and the accept loop that hands connections to the
// workers.

#include <kaminari/cli.hpp>
#include <kaminari/net/runtime.hpp>
#include <kaminari/net/stream.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <functional>
#include <vector>

namespace kaminari::net {

/// Called for every accepted connection on the executor of its worker; `id` numbers
/// connections for the logs. The returned coroutine owns the socket.
using connection_handler =
    std::function<asio::awaitable<void>(asio::ip::tcp::socket socket, std::uint64_t id)>;

/// Binds a listener on every address `local` resolves to (a name may give IPv4 and IPv6).
/// Throws startup_error naming the address when none can be bound.
std::vector<asio::ip::tcp::acceptor> bind_listeners(asio::io_context& ctx, const endpoint& local);

/// Accepts forever. Every connection is spawned on the next worker with a completion handler
/// that logs an escaping exception (which ends only that connection). Accept errors such as
/// EMFILE are logged once per burst and followed by a 100 ms back-off; the loop keeps serving.
/// With `max_conns` (0 = no cap) connections open in the process (rt.active_connections()),
/// a new connection is accepted and closed at once, so the client sees the end of the stream
/// right away instead of waiting in the backlog; refusals are logged once per burst, and
/// serving resumes as soon as a connection ends. `handler` must outlive the loop.
asio::awaitable<void> accept_loop(asio::ip::tcp::acceptor acceptor, runtime& rt,
                                  const connection_handler& handler, std::size_t max_conns = 0);

} // namespace kaminari::net

#pragma once

// Listening: binding the local address and the accept loop that hands connections to the
// workers.

#include <kaminari/cli.hpp>
#include <kaminari/net/runtime.hpp>
#include <kaminari/net/stream.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <exception>
#include <functional>
#include <vector>

namespace kaminari::net {

/// Called for every accepted connection on the executor of its worker; `id` numbers
/// connections for the logs. The returned coroutine owns the socket.
using connection_handler =
    std::function<asio::awaitable<void>(asio::ip::tcp::socket socket, std::uint64_t id)>;

/// A fresh connection id (the `#N` of the log), from the counter that numbers accepted
/// connections: for connections kaminari opens on its own (a Mux.Cool link opened ahead).
std::uint64_t new_connection_id() noexcept;

/// Binds a listener on every address `local` resolves to (a name may give IPv4 and IPv6).
/// Throws startup_error naming the address when none can be bound. With `fast_open` the
/// listeners take TCP Fast Open connections (data in the SYN) where the kernel allows it.
std::vector<asio::ip::tcp::acceptor> bind_listeners(asio::io_context& ctx, const endpoint& local,
                                                    bool fast_open = false);

/// Called when an accept loop ends: with an exception it could not survive, or with none when
/// it was stopped.
using accept_end_handler = std::function<void(std::exception_ptr)>;

/// Accepts on every listener from every worker: each worker waits on the listening socket
/// itself (a duplicate descriptor in its own reactor) and runs the connections it accepts, so
/// a new connection never waits for a hand-off to another thread. Without SO_REUSEPORT: a
/// second instance on the same port still fails to bind instead of silently sharing it. Each
/// worker's registration of the listening socket carries EPOLLEXCLUSIVE (where the kernel
/// has it), so a new connection wakes one worker that waits, not all of them; a worker that
/// runs more connections than another moves to the back of the socket's wait queue (where the
/// kernel looks last for a worker to wake), so connections that come one at a time are spread
/// over the workers.
/// Every connection is spawned with a completion handler that logs an escaping exception
/// (which ends only that connection). Accept errors such as EMFILE are logged once per burst
/// and followed by a 100 ms back-off; the loops keep serving. With `max_conns` (0 = no cap)
/// connections open in the process (rt.active_connections()), a new connection is accepted
/// and closed at once, so the client sees the end of the stream right away instead of waiting
/// in the backlog; refusals are logged once per burst, and serving resumes as soon as a
/// connection ends. `handler` must outlive the loops. Throws startup_error when a descriptor
/// cannot be duplicated.
void serve_listeners(std::vector<asio::ip::tcp::acceptor> listeners, runtime& rt,
                     const connection_handler& handler, std::size_t max_conns,
                     const accept_end_handler& on_end);

} // namespace kaminari::net

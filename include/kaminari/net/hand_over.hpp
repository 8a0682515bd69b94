#pragma once

// Moving an app's connection from one worker to another, for the rare case where the other has
// what it needs and this one has not (a warm connection: net/pool.hpp). Connections otherwise
// stay on the worker that accepted them (net/runtime.hpp).

#include <kaminari/net/stream.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <functional>

namespace kaminari::net {

/// What runs the connection on the worker it went to.
using handed_connection = std::function<asio::awaitable<void>(asio::ip::tcp::socket)>;

/// Moves `socket` (no operation pending on it) into `to`, another worker's io_context, and runs
/// `run` with it there; completes once that has ended, so whoever counts the connection on this
/// worker counts it until then. An exception escaping `run` is logged (connection `id`) and
/// ends only this connection. Returns false, with `socket` left as it was and nothing run, when
/// the socket cannot be moved (its descriptor is no longer open); then the caller serves it
/// here, if it is open.
/// Costs a getsockname, the descriptor leaving this worker's epoll set and joining the other's,
/// and a wake-up of each worker.
///
/// The descriptor is never lost: if the connection cannot start there (bad_alloc registering
/// the descriptor or making `run`'s frame) it is closed and the call completes; if posting to
/// `to` fails, the call throws with the descriptor closed. Only when `to` is destroyed without
/// running what was posted (kaminari stopping) does the call never complete: the descriptor is
/// closed then, and this frame goes with this worker's io_context.
asio::awaitable<bool> hand_over(asio::ip::tcp::socket& socket, asio::io_context& to,
                                handed_connection run, std::uint64_t id);

} // namespace kaminari::net

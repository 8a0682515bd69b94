#pragma once

// Connecting to the remote.

#include <kaminari/cli.hpp>
#include <kaminari/net/stream.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <utility>

namespace kaminari::net {

/// Resolves `remote` (every time, so DNS changes are followed) and connects to the first of its
/// addresses that accepts, within `limit`. Sets TCP_NODELAY.
asio::awaitable<std::pair<error_code, asio::ip::tcp::socket>>
connect_remote(endpoint remote, std::chrono::milliseconds limit);

} // namespace kaminari::net

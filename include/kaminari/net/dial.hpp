#pragma once

// Connecting to the remote.

#include <kaminari/cli.hpp>
#include <kaminari/net/stream.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <memory>
#include <utility>

namespace kaminari::net {

struct dial_options {
    /// TCP Fast Open (TCP_FASTOPEN_CONNECT): the connect completes at once and the first write
    /// goes out in the SYN, once the kernel holds a cookie for the server. Only for a caller
    /// that writes first: until it writes, nothing is sent and nothing can be read.
    bool fast_open = false;
};

/// Resolves `remote` (every time, so DNS changes are followed) and connects to the first of its
/// addresses that accepts, within `limit` (asio::error::timed_out after it). The socket has
/// TCP_NODELAY and, unless the address is on this host (on_this_host()), keepalive
/// (tune_socket) from before its SYN. In VPN mode (enable_protect(),
/// net/protect.hpp) every socket is protected before its connect; a failure there ends the
/// attempt with a protect_errc.
asio::awaitable<std::pair<error_code, asio::ip::tcp::socket>>
connect_remote(endpoint remote, std::chrono::milliseconds limit, dial_options opts = {});

/// A connect_remote() started before its socket is needed, running on its own meanwhile:
/// kaminaris dials its target while a TLS client's Finished is on its way (the target's
/// connect overlaps that round trip). take() waits for the result. Not taken (the handshake
/// failed, or the connection turned out to need no target), it is left to finish on its own
/// and its socket is closed then: a target on this host is connected within start() already,
/// another one within `limit` at most. The executor's thread only.
class dial_ahead {
public:
    dial_ahead() = default;
    dial_ahead(const dial_ahead&) = delete;
    dial_ahead& operator=(const dial_ahead&) = delete;

    /// Starts connecting to `remote` on `exec` (a connect that completes at once does so
    /// before this returns). Once.
    void start(const asio::any_io_executor& exec, endpoint remote, std::chrono::milliseconds limit);

    /// Whether start() was called and take() not yet.
    bool started() const noexcept { return state_ != nullptr; }

    /// The connect's outcome, as connect_remote() gives it, once it is there. After start(),
    /// once.
    asio::awaitable<std::pair<error_code, asio::ip::tcp::socket>> take();

private:
    struct state;
    static asio::awaitable<void> connect_into(std::shared_ptr<state> st, endpoint remote,
                                              std::chrono::milliseconds limit);
    std::shared_ptr<state> state_;
};

} // namespace kaminari::net

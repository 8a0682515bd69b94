#include "kaminari/net/dial.hpp"

#include <kaminari/net/protect.hpp>
#include <kaminari/net/socket_options.hpp>
#include <kaminari/net/splice.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <exception>
#include <memory>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <optional>
#include <string>
#include <sys/socket.h>
#include <vector>

namespace kaminari::net {

namespace {

using tcp = asio::ip::tcp;

error_code last_error() noexcept {
    return {errno, boost::system::system_category()};
}

// Whether a connect that said EINPROGRESS has completed already. To an address on this host it
// has: the loopback handshake runs inside connect() itself.
bool established(int fd) noexcept {
    ::tcp_info info{};
    socklen_t len = sizeof info;
    return ::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0 &&
           info.tcpi_state == TCP_ESTABLISHED;
}

// One attempt at `ep` on a fresh socket, tuned before the SYN leaves. With `fast_open` the
// kernel defers the connect to the first write, whose bytes then ride in the SYN (when it holds
// a cookie for the server; otherwise this is an ordinary connect that asks for one). In VPN
// mode (protect_path() set) the socket is protected before its connect, within
// protect_timeout and what is left before the deadline. `arm()` starts the deadline; it is
// called only before something that waits, so a connect that completes at once (a target on
// this host) costs no timer, no wait for writability and no EPOLLOUT registration (which asio's
// async_connect leaves on the socket, so that each later wait for reading reports a spurious
// writable event too).
template <class Arm>
asio::awaitable<error_code> connect_one(tcp::socket& socket, const tcp::endpoint& ep,
                                        bool fast_open, Arm& arm) {
    error_code ec;
    socket.open(ep.protocol(), ec);
    if (ec == asio::error::no_descriptors && release_spare_pipes() != 0) {
        socket.open(ep.protocol(), ec); // out of descriptors: the spare pipes' go first
    }
    if (ec) {
        co_return ec;
    }
    tune_dialed(socket, ep);
    if (fast_open) {
        const int on = 1;
        (void)::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &on,
                           sizeof on);
    }
    if (const std::string* path = protect_path()) {
        const auto deadline = arm();
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        const auto limit = std::clamp(left, std::chrono::milliseconds(0), protect_timeout);
        if (auto pec = co_await protect_socket(socket.native_handle(), *path, limit)) {
            // Cut short by the connect deadline: that is a connect timeout, not the app's.
            co_return pec == protect_errc::timed_out&& limit < protect_timeout
                ? error_code(asio::error::timed_out)
                : pec;
        }
    }
    // What async_connect does, without its wait when there is nothing to wait for.
    socket.native_non_blocking(true, ec);
    if (ec) {
        co_return ec;
    }
    const int fd = socket.native_handle();
    if (::connect(fd, ep.data(), static_cast<socklen_t>(ep.size())) == 0) {
        co_return error_code{}; // (with fast open: deferred to the first write)
    }
    if (errno != EINPROGRESS && errno != EINTR) {
        co_return last_error();
    }
    if (established(fd)) {
        co_return error_code{};
    }
    arm();
    auto [wec] = co_await socket.async_wait(tcp::socket::wait_write, use_tuple);
    if (wec) {
        co_return wec;
    }
    if (!socket.is_open()) {
        // The deadline closed it after the wait completed (the caller reports timed_out).
        co_return asio::error::operation_aborted;
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        co_return last_error();
    }
    co_return error_code(err, boost::system::system_category());
}

} // namespace

asio::awaitable<std::pair<error_code, tcp::socket>>
connect_remote(endpoint remote, std::chrono::milliseconds limit, dial_options opts) {
    auto exec = co_await asio::this_coro::executor;
    tcp::socket socket(exec);
    tcp::resolver resolver(exec);
    // The deadline closes whatever is under way then: a plain timer, not a parallel group
    // (which costs a coroutine and several allocations per connection). Its handler may run
    // after this frame is gone (it was queued just before the connect completed), so what it
    // shares with the frame lives on the heap, and `done` tells it to leave the rest alone.
    struct deadline_state {
        bool done = false;
        bool expired = false;
    };
    std::shared_ptr<deadline_state> state; // set once armed
    asio::steady_timer timer(exec, limit);
    // Started before the first wait (a connect that completes at once has none).
    auto arm = [&] {
        if (!state) {
            state = std::make_shared<deadline_state>();
            timer.async_wait([state = state, &socket, &resolver](const error_code& ec) {
                if (ec || state->done) {
                    return;
                }
                state->expired = true;
                resolver.cancel();
                error_code ignored;
                socket.close(ignored);
            });
        }
        return timer.expiry();
    };
    const auto finish = [&](error_code ec) {
        if (state) {
            state->done = true;
            timer.cancel();
        }
        if (state && state->expired) {
            ec = asio::error::timed_out;
        }
        if (ec) {
            error_code ignored;
            socket.close(ignored);
        }
        return std::pair{ec, std::move(socket)};
    };

    error_code ec;
    const auto literal = asio::ip::make_address(remote.host, ec);
    if (!ec) {
        // An address literal needs no resolver thread.
        ec = co_await connect_one(socket, tcp::endpoint(literal, remote.port), opts.fast_open, arm);
        co_return finish(ec);
    }
    arm();
    auto [rec, results] = co_await resolver.async_resolve(
        remote.host, std::to_string(remote.port), tcp::resolver::numeric_service, use_tuple);
    if (rec || state->expired) {
        co_return finish(rec);
    }
    ec = asio::error::host_not_found;
    for (const auto& r : results) {
        ec = co_await connect_one(socket, r.endpoint(), opts.fast_open, arm);
        // A protect failure is not the address's: the next one would fail the same way.
        if (!ec || state->expired || ec.category() == protect_category()) {
            break;
        }
        error_code ignored;
        socket.close(ignored);
    }
    co_return finish(ec);
}

struct dial_ahead::state {
    explicit state(const asio::any_io_executor& exec)
        : wake(exec, asio::steady_timer::time_point::max()) {}
    std::optional<std::pair<error_code, tcp::socket>> result;
    asio::steady_timer wake; ///< cancelled when the result is there
};

asio::awaitable<void> dial_ahead::connect_into(std::shared_ptr<state> st, endpoint remote,
                                               std::chrono::milliseconds limit) {
    const auto exec = co_await asio::this_coro::executor;
    try {
        auto r = co_await connect_remote(std::move(remote), limit);
        st->result.emplace(std::move(r));
    } catch (const std::exception&) { // resources: the connection fails, not the process
        st->result.emplace(asio::error::no_memory, tcp::socket(exec));
    }
    st->wake.cancel();
}

void dial_ahead::start(const asio::any_io_executor& exec, endpoint remote,
                       std::chrono::milliseconds limit) {
    state_ = std::make_shared<state>(exec);
    asio::co_spawn(exec, connect_into(state_, std::move(remote), limit), asio::detached);
}

asio::awaitable<std::pair<error_code, tcp::socket>> dial_ahead::take() {
    const std::shared_ptr<state> st = std::move(state_);
    while (!st->result) {
        co_await st->wake.async_wait(use_tuple);
    }
    co_return std::move(*st->result);
}

} // namespace kaminari::net

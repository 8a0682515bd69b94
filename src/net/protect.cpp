#include "kaminari/net/protect.hpp"

#include <kaminari/log.hpp>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <utility>

namespace kaminari::net {

namespace {

class protect_category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "kaminari.protect"; }

    std::string message(int ev) const override {
        switch (static_cast<protect_errc>(ev)) {
        case protect_errc::no_socket:
            return "VPN protect: there is no protect_path socket in the working directory (is "
                   "the VPN service running?)";
        case protect_errc::not_listening:
            return "VPN protect: protect_path refused the connection (nothing listens on it)";
        case protect_errc::unreachable:
            return "VPN protect: cannot connect to protect_path";
        case protect_errc::send_failed:
            return "VPN protect: the socket could not be sent to protect_path";
        case protect_errc::no_reply:
            return "VPN protect: protect_path closed without a reply";
        case protect_errc::refused:
            return "VPN protect: the VPN app did not protect the socket (nonzero reply)";
        case protect_errc::timed_out:
            return "VPN protect: no reply from protect_path within 3 s";
        }
        return "VPN protect: unknown error";
    }
};

// Set once by enable_protect() before the workers start, read-only afterwards.
std::string protect_path_value;

using local = asio::local::stream_protocol;

// One sendmsg of a single byte carrying `fd` as SCM_RIGHTS; errno is kept on failure.
ssize_t send_descriptor(int over, int fd) noexcept {
    // The app reads one byte and ignores its value; shadowsocks-rust sends 1, v2ray-plugin '!'.
    std::uint8_t dummy = 1;
    iovec iov{&dummy, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
    return ::sendmsg(over, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

} // namespace

const boost::system::error_category& protect_category() noexcept {
    static const protect_category_impl instance;
    return instance;
}

void enable_protect(std::string path) {
    protect_path_value = std::move(path);
}

const std::string* protect_path() noexcept {
    return protect_path_value.empty() ? nullptr : &protect_path_value;
}

asio::awaitable<error_code> protect_socket(int fd, const std::string& path,
                                           std::chrono::milliseconds limit) {
    // A descriptor of our own for the socket: the caller's deadline may close `fd` meanwhile,
    // and by the time it is sent that number could name another socket of the process.
    struct owned_fd {
        int fd;
        ~owned_fd() {
            if (fd >= 0) {
                ::close(fd);
            }
        }
    };
    const owned_fd own{::fcntl(fd, F_DUPFD_CLOEXEC, 0)};
    if (own.fd < 0) {
        log::debug("VPN protect: duplicating the socket: {}", std::strerror(errno));
        co_return protect_errc::send_failed;
    }
    auto exec = co_await asio::this_coro::executor;
    local::socket channel(exec);
    // The deadline closes the channel, which ends whatever step is under way (as in
    // connect_remote): its handler may run after this frame is gone, so what it shares with
    // the frame lives on the heap, and `done` tells it to leave the channel alone.
    struct deadline_state {
        bool done = false;
        bool expired = false;
    };
    auto state = std::make_shared<deadline_state>();
    asio::steady_timer timer(exec, limit);
    timer.async_wait([state, &channel](const error_code& ec) {
        if (ec || state->done) {
            return;
        }
        state->expired = true;
        error_code ignored;
        channel.close(ignored);
    });
    const auto finish = [&](error_code ec) {
        state->done = true;
        timer.cancel();
        if (state->expired) {
            ec = protect_errc::timed_out;
        }
        error_code ignored;
        channel.close(ignored);
        return ec;
    };

    // A new connection per socket, as v2ray-plugin and shadowsocks-rust do: the app answers
    // one request per connection.
    local::endpoint where;
    try {
        where = local::endpoint(path);
    } catch (const std::exception&) {
        co_return finish(protect_errc::unreachable); // a path too long for sun_path
    }
    auto [cec] = co_await channel.async_connect(where, use_tuple);
    if (cec) {
        log::debug("VPN protect: connect to {}: {}", path, cec.message());
        co_return finish(cec == asio::error::connection_refused ? protect_errc::not_listening
                         : cec == boost::system::errc::no_such_file_or_directory
                             ? protect_errc::no_socket
                             : protect_errc::unreachable);
    }
    for (;;) {
        if (send_descriptor(channel.native_handle(), own.fd) == 1) {
            break;
        }
        const int err = errno;
        if (err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
            log::debug("VPN protect: sending the socket to {}: {}", path, std::strerror(err));
            co_return finish(protect_errc::send_failed);
        }
        auto [wec] = co_await channel.async_wait(local::socket::wait_write, use_tuple);
        if (wec) {
            co_return finish(protect_errc::send_failed);
        }
    }
    std::uint8_t reply = 0xff;
    auto [rec, n] = co_await channel.async_read_some(asio::buffer(&reply, 1), use_tuple);
    if (rec || n != 1) {
        if (rec != asio::error::eof && !state->expired) {
            log::debug("VPN protect: reading the reply from {}: {}", path, rec.message());
        }
        co_return finish(protect_errc::no_reply);
    }
    if (reply != 0) {
        log::debug("VPN protect: {} replied {}", path, reply);
        co_return finish(protect_errc::refused);
    }
    co_return finish({});
}

} // namespace kaminari::net

#include "kaminari/net/splice.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>

#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

namespace kaminari::net {

namespace {

using tcp = asio::ip::tcp;

// The largest chunk moved per splice call; the pipe is grown to hold it.
constexpr std::size_t splice_chunk = 256 * 1024;

class pipe_pair {
public:
    pipe_pair() = default;
    pipe_pair(const pipe_pair&) = delete;
    pipe_pair& operator=(const pipe_pair&) = delete;
    ~pipe_pair() {
        for (int fd : fds_) {
            if (fd >= 0) {
                ::close(fd);
            }
        }
    }

    error_code open() noexcept {
        if (::pipe2(fds_, O_NONBLOCK | O_CLOEXEC) != 0) {
            return {errno, boost::system::system_category()};
        }
        // A bigger pipe means fewer wake-ups per byte; the kernel may cap it (pipe-max-size).
        (void)::fcntl(fds_[1], F_SETPIPE_SZ, static_cast<int>(splice_chunk));
        return {};
    }
    int read_end() const noexcept { return fds_[0]; }
    int write_end() const noexcept { return fds_[1]; }

private:
    int fds_[2] = {-1, -1};
};

error_code last_error() noexcept {
    return {errno, boost::system::system_category()};
}

void close_both(tcp::socket& a, tcp::socket& b) noexcept {
    error_code ignored;
    a.close(ignored);
    b.close(ignored);
}

asio::awaitable<copy_result> splice_one_way(tcp::socket& from, tcp::socket& to) {
    copy_result result;
    pipe_pair pipe;
    // An idle direction waits without a pipe; once data flows, splice is tried first and the
    // reactor is asked only when the socket runs dry.
    bool readable_known = false;
    for (;;) {
        if (!readable_known) {
            auto [wec] = co_await from.async_wait(tcp::socket::wait_read, use_tuple);
            if (wec) {
                result.ec = wec;
                break;
            }
            if (pipe.read_end() < 0) {
                if (auto ec = pipe.open()) {
                    result.ec = ec;
                    break;
                }
            }
        }
        const ssize_t n = ::splice(from.native_handle(), nullptr, pipe.write_end(), nullptr,
                                   splice_chunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                readable_known = false;
                continue;
            }
            result.ec = last_error();
            break;
        }
        readable_known = true;
        if (n == 0) {
            error_code ec;
            to.shutdown(tcp::socket::shutdown_send, ec);
            if (ec) {
                result.ec = ec;
                break;
            }
            co_return result;
        }
        std::size_t pending = static_cast<std::size_t>(n);
        while (pending > 0) {
            const ssize_t m = ::splice(pipe.read_end(), nullptr, to.native_handle(), nullptr,
                                       pending, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (m > 0) {
                pending -= static_cast<std::size_t>(m);
                result.bytes += static_cast<std::uint64_t>(m);
                continue;
            }
            if (m < 0 && (errno == EAGAIN || errno == EINTR)) {
                auto [ec] = co_await to.async_wait(tcp::socket::wait_write, use_tuple);
                if (ec) {
                    result.ec = ec;
                    break;
                }
                continue;
            }
            result.ec = m < 0 ? last_error() : error_code(asio::error::connection_reset);
            break;
        }
        if (result.ec) {
            break;
        }
    }
    close_both(from, to);
    co_return result;
}

} // namespace

asio::awaitable<relay_result> splice_relay(tcp::socket& a, tcp::socket& b) {
    using namespace asio::experimental::awaitable_operators;
    error_code ec;
    // splice() must never block the worker: the sockets themselves go non-blocking.
    a.non_blocking(true, ec);
    if (!ec) {
        b.non_blocking(true, ec);
    }
    if (ec) {
        close_both(a, b);
        co_return relay_result{{0, ec}, {0, ec}};
    }
    auto [ab, ba] = co_await (splice_one_way(a, b) && splice_one_way(b, a));
    co_return relay_result{ab, ba};
}

} // namespace kaminari::net

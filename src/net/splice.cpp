#include "kaminari/net/splice.hpp"

#include <kaminari/net/socket_options.hpp>

#include <boost/asio/post.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

namespace kaminari::net::detail {

namespace {

using tcp = asio::ip::tcp;

// The largest chunk moved per splice call; the pipe is grown to hold it.
constexpr std::size_t splice_chunk = 256 * 1024;

// waiter ids besides the two directions.
constexpr int watchdog_id = 2;
constexpr int posted_id = 3;

error_code last_error() noexcept {
    return {errno, boost::system::system_category()};
}

// Whether the system call that just failed would do better later (nothing there, no room, or
// a signal).
bool try_again() noexcept {
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

// A worker's empty pipes, kept for its next connections: a new pipe costs pipe2() and fcntl()
// and a closed one two close() calls, 8 of the ~50 syscalls a short tcp connection makes per
// side. Only empty pipes come back (a direction that ended with bytes still in its pipe closes
// it), so a pooled pipe holds no pages, only its descriptors. Connections run on the thread that
// accepted them, so the pool is per thread and lock-free.
class pipe_pool {
public:
    static constexpr std::size_t capacity = 16;

    pipe_pool() = default;
    pipe_pool(const pipe_pool&) = delete;
    pipe_pool& operator=(const pipe_pool&) = delete;
    ~pipe_pool() { drain(); }

    bool take(int (&fds)[2]) noexcept {
        if (size_ == 0) {
            return false;
        }
        --size_;
        fds[0] = pipes_[size_][0];
        fds[1] = pipes_[size_][1];
        return true;
    }

    bool give(const int (&fds)[2]) noexcept {
        if (size_ == capacity) {
            return false;
        }
        pipes_[size_][0] = fds[0];
        pipes_[size_][1] = fds[1];
        ++size_;
        return true;
    }

    std::size_t drain() noexcept {
        const std::size_t n = size_;
        while (size_ != 0) {
            --size_;
            ::close(pipes_[size_][0]);
            ::close(pipes_[size_][1]);
        }
        return n;
    }

    std::size_t size() const noexcept { return size_; }

private:
    int pipes_[capacity][2];
    std::size_t size_ = 0;
};

thread_local pipe_pool spare_pipes;

error_code open_pipe(int (&fds)[2]) noexcept {
    if (spare_pipes.take(fds)) {
        return {};
    }
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        return last_error();
    }
    // A bigger pipe means fewer wake-ups per byte; the kernel may cap it (pipe-max-size).
    (void)::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(splice_chunk));
    return {};
}

// Gives an empty pipe back to the thread's pool, closes one that still holds bytes.
void close_pipe(int (&fds)[2], bool empty) noexcept {
    if (fds[0] < 0) {
        return;
    }
    if (!empty || !spare_pipes.give(fds)) {
        ::close(fds[0]);
        ::close(fds[1]);
    }
    fds[0] = fds[1] = -1;
}

// Milliseconds since data last went either way on `s`; nullopt once the socket is closed.
std::optional<std::uint32_t> quiet_ms(tcp::socket& s) noexcept {
    const auto q = quiet_times(s);
    if (!q) {
        return std::nullopt;
    }
    return std::min(q->since_in_ms, q->since_out_ms);
}

} // namespace

splice_relay_state::splice_relay_state(tcp::socket& a, tcp::socket& b,
                                       std::chrono::milliseconds idle_limit)
    : dirs_{{a, b}, {b, a}}
    , idle_limit_(idle_limit) {
}

splice_relay_state::~splice_relay_state() {
    for (auto& d : dirs_) {
        close_pipe(d.pipe, d.in_pipe == 0);
    }
}

void splice_relay_state::start() {
    error_code ec;
    // splice() must never block the worker: the sockets themselves go non-blocking (one that
    // asio has made so already, a connected one, needs no second ioctl).
    for (auto& d : dirs_) {
        if (!ec && !d.from->native_non_blocking()) {
            d.from->native_non_blocking(true, ec);
        }
    }
    if (ec) {
        cancel();
        for (auto& d : dirs_) {
            d.result.ec = ec;
            d.done = true;
        }
        // Completes from the executor, never from inside the initiating call.
        ++pending_;
        asio::post(dirs_[0].from->get_executor(),
                   [w = waiter(this, posted_id)]() mutable { w(error_code{}); });
        return;
    }
    // A direction holds a pipe only while it moves bytes (see pump()). The first socket's
    // first bytes are usually there already (the accepted side: its peer spoke while the
    // remote was being dialed), so they are tried for at once: one splice instead of a wait
    // for readability and a trip through the reactor.
    pump(dirs_[0]);
    wait(dirs_[1], tcp::socket::wait_read);
    if (idle_limit_.count() > 0) {
        watchdog_.emplace(dirs_[0].from->get_executor());
        check_idle();
    }
}

void splice_relay_state::cancel() noexcept {
    error_code ignored;
    dirs_[0].from->close(ignored);
    dirs_[1].from->close(ignored);
    if (watchdog_) {
        watchdog_->cancel();
    }
}

void splice_relay_state::wait(direction& d, asio::socket_base::wait_type type) {
    ++pending_;
    auto& s = type == tcp::socket::wait_read ? *d.from : *d.to;
    s.async_wait(type, waiter(this, static_cast<int>(&d - dirs_)));
}

void splice_relay_state::on_ready(int which, const error_code& ec) {
    --pending_;
    if (which == watchdog_id) {
        if (!ec) {
            check_idle();
        }
    } else if (which != posted_id) {
        direction& d = dirs_[which];
        if (ec) {
            end(d, ec);
        } else {
            pump(d);
        }
    }
    if (pending_ == 0) {
        complete(relay_result{dirs_[0].result, dirs_[1].result, idle_});
    }
}

void splice_relay_state::abandon() noexcept {
    if (--pending_ == 0) {
        delete this;
    }
}

// Moves what `d.from` has through the pipe until the socket runs dry (then gives the empty
// pipe back to the thread's spares and waits for it to be readable) or `d.to` is full (then
// waits for it to be writable, holding the pipe and the bytes in it). So a pipe is held only
// while bytes are on their way: a quiet connection holds its two sockets and nothing else,
// and a worker's connections share the few pipes busy at any one time instead of creating
// and closing two each.
void splice_relay_state::pump(direction& d) {
    if (d.pipe[0] < 0 && open_pipe(d.pipe)) {
        copy_without_pipe(d);
        return;
    }
    for (;;) {
        while (d.in_pipe > 0) {
            const ssize_t m = ::splice(d.pipe[0], nullptr, d.to->native_handle(), nullptr,
                                       d.in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (m > 0) {
                d.in_pipe -= static_cast<std::size_t>(m);
                d.result.bytes += static_cast<std::uint64_t>(m);
                continue;
            }
            stop_writing(d, m);
            return;
        }
        const ssize_t n = ::splice(d.from->native_handle(), nullptr, d.pipe[1], nullptr,
                                   splice_chunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n <= 0) {
            stop_reading(d, n);
            return;
        }
        d.in_pipe = static_cast<std::size_t>(n);
    }
}

// Without a pipe to be had (the process is out of descriptors: the listener and the dialer give
// the spare pipes up first), a connection that is already running must not fail, so this
// wake-up's bytes go through a buffer on the stack instead, and leave `d.from` only once
// `d.to` has taken them: peek, send what `d.to` takes, then read exactly that much. Nothing is
// held between wake-ups (bytes that did not go stay in the socket), so the next one tries for
// a pipe again.
void splice_relay_state::copy_without_pipe(direction& d) {
    std::array<std::uint8_t, 16 * 1024> buf;
    const int from = d.from->native_handle();
    const int to = d.to->native_handle();
    for (;;) {
        const ssize_t n = ::recv(from, buf.data(), buf.size(), MSG_PEEK | MSG_DONTWAIT);
        if (n <= 0) {
            stop_reading(d, n);
            return;
        }
        const ssize_t m =
            ::send(to, buf.data(), static_cast<std::size_t>(n), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (m <= 0) {
            stop_writing(d, m);
            return;
        }
        // They are there (peeked), so this takes exactly them.
        const ssize_t taken = ::recv(from, buf.data(), static_cast<std::size_t>(m), MSG_DONTWAIT);
        if (taken != m) {
            end(d, taken < 0 ? last_error() : error_code(asio::error::connection_reset));
            return;
        }
        d.result.bytes += static_cast<std::uint64_t>(m);
    }
}

// A read from `d.from` (splice or recv) that moved nothing, `n` <= 0: with nothing there yet,
// gives back the direction's pipe (empty: reads happen only then) and waits for more; at end
// of stream, passes it on to `d.to`; on an error, ends the direction with it.
void splice_relay_state::stop_reading(direction& d, ssize_t n) {
    if (n < 0 && try_again()) {
        close_pipe(d.pipe, true);
        wait(d, tcp::socket::wait_read);
        return;
    }
    if (n < 0) {
        end(d, last_error());
        return;
    }
    error_code ec;
    d.to->shutdown(tcp::socket::shutdown_send, ec);
    end(d, ec);
}

// A write to `d.to` that moved nothing, `m` <= 0: waits for room, or ends the direction.
void splice_relay_state::stop_writing(direction& d, ssize_t m) {
    if (m < 0 && try_again()) {
        wait(d, tcp::socket::wait_write);
        return;
    }
    end(d, m < 0 ? last_error() : error_code(asio::error::connection_reset));
}

// A clean end (no `ec`) ends only this direction; an error closes both sockets, which ends the
// other direction too.
void splice_relay_state::end(direction& d, const error_code& ec) {
    d.done = true;
    d.result.ec = ec;
    close_pipe(d.pipe, d.in_pipe == 0);
    if (ec) {
        error_code ignored;
        d.from->close(ignored);
        d.to->close(ignored);
    }
    if (dirs_[0].done && dirs_[1].done && watchdog_) {
        watchdog_->cancel();
    }
}

// The idle watchdog. splice(2) moves bytes inside the kernel and reports nothing until it ends,
// so activity is read from the sockets themselves: one getsockopt per socket per check, and a
// check at most once per limit while data flows. When both sockets have been quiet for the
// limit, closes them, which ends both directions.
void splice_relay_state::check_idle() {
    if (dirs_[0].done && dirs_[1].done) {
        return;
    }
    const auto qa = quiet_ms(*dirs_[0].from);
    const auto qb = quiet_ms(*dirs_[1].from);
    auto wait_for = idle_limit_;
    if (qa && qb) {
        const std::chrono::milliseconds quiet{std::min(*qa, *qb)};
        if (quiet >= idle_limit_) {
            idle_ = true;
            error_code ignored;
            dirs_[0].from->close(ignored);
            dirs_[1].from->close(ignored);
            return;
        }
        wait_for = idle_limit_ - quiet;
    }
    ++pending_;
    watchdog_->expires_after(wait_for);
    watchdog_->async_wait(waiter(this, watchdog_id));
}

} // namespace kaminari::net::detail

namespace kaminari::net {

std::size_t release_spare_pipes() noexcept {
    return detail::spare_pipes.drain();
}

std::size_t spare_pipe_count() noexcept {
    return detail::spare_pipes.size();
}

} // namespace kaminari::net

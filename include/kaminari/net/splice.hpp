#pragma once

// Zero-copy relay for two plain TCP sockets: splice(2) moves bytes socket -> pipe -> socket
// inside the kernel, so no payload is copied to user space and no payload buffer is held.

#include <kaminari/net/relay.hpp>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <sys/types.h>
#include <utility>

namespace kaminari::net {

/// Closes the calling thread's spare pipes (async_splice_relay() keeps up to 16 empty ones per
/// thread for the next connections); returns how many pipes were closed. For when descriptors
/// run out (EMFILE): each pipe is two.
std::size_t release_spare_pipes() noexcept;

/// How many spare pipes the calling thread holds (for tests).
std::size_t spare_pipe_count() noexcept;

namespace detail {

// The relay as a plain state machine on socket readiness callbacks rather than coroutines:
// an idle connection costs this object and one pending wait per socket, a fraction of two
// coroutine frames joined by a parallel group. Owns itself: it lives while a wait or the timer
// is pending, completes (complete()) once none is, and is deleted without completing when the
// io_context is destroyed with a wait still pending.
class splice_relay_state {
public:
    splice_relay_state(const splice_relay_state&) = delete;
    splice_relay_state& operator=(const splice_relay_state&) = delete;

    // Starts both directions (and the watchdog); the result is delivered by complete().
    void start();

    // Closes both sockets, which ends both directions (the cancellation handler).
    void cancel() noexcept;

protected:
    splice_relay_state(asio::ip::tcp::socket& a, asio::ip::tcp::socket& b,
                       std::chrono::milliseconds idle_limit);
    virtual ~splice_relay_state();

    // Called once, when nothing is pending any more; deletes this.
    virtual void complete(relay_result r) = 0;

private:
    struct direction {
        direction(asio::ip::tcp::socket& f, asio::ip::tcp::socket& t) noexcept
            : from(&f)
            , to(&t) {}
        asio::ip::tcp::socket* from;
        asio::ip::tcp::socket* to;
        int pipe[2] = {-1, -1}; // held only while bytes move (see pump())
        std::size_t in_pipe = 0;
        copy_result result;
        bool done = false;
    };

    // A pending wait's handler. Destroyed without being called only when the io_context is
    // destroyed first: then the relay is abandoned, not completed.
    class waiter {
    public:
        waiter(splice_relay_state* s, int which) noexcept
            : s_(s)
            , which_(which) {}
        waiter(waiter&& o) noexcept
            : s_(std::exchange(o.s_, nullptr))
            , which_(o.which_) {}
        waiter& operator=(waiter&&) = delete;
        ~waiter() {
            if (s_ != nullptr) {
                s_->abandon();
            }
        }
        void operator()(const error_code& ec) { std::exchange(s_, nullptr)->on_ready(which_, ec); }

    private:
        splice_relay_state* s_;
        int which_; // 0, 1: readable/writable for that direction; 2: the watchdog's timer
    };

    void on_ready(int which, const error_code& ec);
    void abandon() noexcept;
    void pump(direction& d);
    void copy_without_pipe(direction& d);
    void stop_reading(direction& d, ssize_t n);
    void stop_writing(direction& d, ssize_t m);
    void end(direction& d, const error_code& ec);
    void check_idle();
    void wait(direction& d, asio::socket_base::wait_type type);

    direction dirs_[2];
    std::optional<asio::steady_timer> watchdog_; // only with an idle limit
    std::chrono::milliseconds idle_limit_;
    int pending_ = 0; // waits and timer waits outstanding
    bool idle_ = false;
};

template <class Handler>
class splice_relay_op final : public splice_relay_state {
public:
    splice_relay_op(asio::ip::tcp::socket& a, asio::ip::tcp::socket& b,
                    std::chrono::milliseconds idle_limit, Handler handler)
        : splice_relay_state(a, b, idle_limit)
        , handler_(std::move(handler)) {
        auto slot = asio::get_associated_cancellation_slot(handler_);
        if (slot.is_connected()) {
            slot.assign([this](asio::cancellation_type) { cancel(); });
        }
    }

private:
    ~splice_relay_op() override {
        if (!completed_) {
            clear_slot(); // abandoned: the slot may outlive this
        }
    }

    void complete(relay_result r) override {
        clear_slot();
        completed_ = true;
        Handler h = std::move(handler_);
        delete this;
        std::move(h)(r);
    }

    void clear_slot() noexcept {
        auto slot = asio::get_associated_cancellation_slot(handler_);
        if (slot.is_connected()) {
            slot.clear();
        }
    }

    Handler handler_;
    bool completed_ = false;
};

} // namespace detail

/// Relays `a` <-> `b` until both directions have ended, with the same half-close and error
/// behaviour as relay(): end of stream shuts down the other socket's write side; an error
/// closes both. A direction holds a pipe only while bytes move: it takes one from the thread's
/// spare pipes (or makes one) when its socket has bytes, and gives it back when the socket runs
/// dry with the pipe empty, so a quiet connection holds none. Out of descriptors, with no pipe
/// to be had, bytes go through a small buffer instead, only as far as the other side takes
/// them (the connection slows down but does not fail). With a non-zero `idle_limit`, when both
/// sockets have been quiet (per the kernel's TCP_INFO) for that long, closes them and sets `idle`
/// in the result. The sockets must outlive the operation; cancelling it closes them. Completes with
/// void(relay_result), on the sockets' executor.
template <asio::completion_token_for<void(relay_result)> Token>
auto async_splice_relay(asio::ip::tcp::socket& a, asio::ip::tcp::socket& b,
                        std::chrono::milliseconds idle_limit, Token&& token) {
    return asio::async_initiate<Token, void(relay_result)>(
        [](auto handler, asio::ip::tcp::socket* a, asio::ip::tcp::socket* b,
           std::chrono::milliseconds limit) {
            using op = detail::splice_relay_op<std::decay_t<decltype(handler)>>;
            (new op(*a, *b, limit, std::move(handler)))->start();
        },
        token, &a, &b, idle_limit);
}

} // namespace kaminari::net

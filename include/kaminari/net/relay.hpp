#pragma once

// Bidirectional copy between two byte streams until both directions end.

#include <kaminari/net/buffer_pool.hpp>
#include <kaminari/net/stream.hpp>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <type_traits>
#include <utility>
#include <variant>

namespace kaminari::net {

/// What one direction of a relay moved and how it ended.
struct copy_result {
    std::uint64_t bytes = 0;
    error_code ec; ///< empty when the direction ended with a clean end of stream
};

struct relay_result {
    copy_result a_to_b;
    copy_result b_to_a;
    bool idle = false; ///< closed by the idle timeout (the directions then show its errors)
};

/// Largest buffer a relay direction grows to (see copy_stream). Measured on loopback, ws
/// throughput went 9.3 / 13 / 14 / 15.5 Gbit/s and CPU 1.24 / 0.92 / 0.86 / 0.77 s per GiB
/// with 16 / 64 / 128 / 256 KiB buffers.
inline constexpr std::size_t relay_buffer_size = 256 * 1024;

/// Where a relay direction's buffer starts, and the smallest it shrinks to.
inline constexpr std::size_t relay_min_buffer_size = 16 * 1024;

/// The buffer size after a read of `n` bytes into a buffer of `size` (at most `max`): a bulk
/// flow that fills its buffer gets a 4x bigger one, a read that uses under a quarter of it
/// gets a 4x smaller one, so interactive and idle directions stay small.
constexpr std::size_t next_buffer_size(std::size_t size, std::size_t n, std::size_t max) noexcept {
    if (n == size && size < max) {
        return std::min(size * 4, max);
    }
    if (n < size / 4 && size > relay_min_buffer_size) {
        return std::max(size / 4, relay_min_buffer_size);
    }
    return size;
}

/// A stream that can wait until a read would make progress without taking a buffer.
template <class S>
concept waitable_stream = byte_stream<S> && requires(S& s) {
    { s.wait_readable() } -> std::same_as<asio::awaitable<error_code>>;
};

/// A waitable stream that can also read without waiting (asio::error::would_block when nothing
/// has arrived).
template <class S>
concept try_readable_stream = waitable_stream<S> && requires(S& s, std::span<std::uint8_t> buf) {
    { s.try_read_some(buf) } -> std::same_as<io_result>;
};

/// A stream whose readability can be waited for on a socket without a coroutine
/// (tcp_stream, ws_stream over TCP): nullptr when a read can make progress at once.
template <class S>
concept socket_waitable_stream = byte_stream<S> && requires(S& s) {
    { s.wait_socket() } -> std::same_as<asio::ip::tcp::socket*>;
};

/// What a copy that runs in bursts keeps between them (see copy_stream).
struct copy_burst {
    std::size_t want = 0; ///< the next read's buffer size; 0: not started
    bool ended = false;   ///< the direction has ended (end of stream or error)
};

/// Copies `from` to `to` until `from` ends. A clean end of stream half-closes `to`
/// (shutdown_send) and returns; any error closes both streams, so the other direction ends
/// too. The buffer is handed to `to.write` mutable: a websocket client masks it in place.
/// When `from` can wait for readability, the buffer is borrowed from the thread's pool only
/// for one read and its write, so an idle direction holds no buffer. When `moved` is given,
/// every completed write adds its byte count to it (the idle watchdog reads it); it must
/// outlive the copy, and be touched only on the streams' thread.
///
/// With `burst` (a source with wait_socket() only), it is one burst of the copy: the caller
/// has seen `from` readable, so it reads at once, and it returns (the bytes of this burst)
/// as soon as it would have to wait for `from` again, or with `burst->ended` set once the
/// direction has ended. Between bursts the caller waits for `from.wait_socket()` without a
/// coroutine, so an idle direction holds no frame either.
template <byte_stream From, byte_stream To>
asio::awaitable<copy_result> copy_stream(From& from, To& to, std::size_t buffer_size,
                                         std::uint64_t* moved = nullptr,
                                         copy_burst* burst = nullptr) {
    copy_result result;
    buffer_lease buf;
    std::size_t want = std::min(relay_min_buffer_size, buffer_size);
    if (burst != nullptr && burst->want != 0) {
        want = burst->want;
    }
    bool woken = burst != nullptr; // a burst starts with its source readable
    for (;;) {
        // The read, in this frame rather than a coroutine of its own, which an idle direction
        // would hold too. The buffer is borrowed only once the source is readable and kept
        // only while data keeps flowing, so an idle direction holds none:
        // - a try-readable source (TCP) is read without the reactor until it runs dry;
        // - a waitable source (TLS, websocket) keeps the buffer after a read that filled it
        //   (more is likely queued) and gives it back after a short read (below);
        // - any other source reads into a buffer it keeps.
        io_result got;
        if (!buf) {
            if constexpr (socket_waitable_stream<From>) {
                // Waited on here: wait_readable() is one or two more frames an idle direction
                // would hold.
                if (auto* s = from.wait_socket(); s != nullptr && !woken) {
                    if (burst != nullptr) {
                        burst->want = want;
                        co_return result;
                    }
                    auto [ec] = co_await s->async_wait(asio::socket_base::wait_read, use_tuple);
                    got.ec = ec;
                }
                woken = false;
            } else if constexpr (waitable_stream<From>) {
                got.ec = co_await from.wait_readable();
            }
            if (!got.ec) {
                buf = borrow_buffer(want);
            }
        }
        if (!got.ec) {
            if constexpr (try_readable_stream<From>) {
                got = from.try_read_some(buf.span());
                if (got.ec == asio::error::would_block || got.ec == asio::error::try_again) {
                    buf.release();
                    continue;
                }
            } else {
                got = co_await from.read_some(buf.span());
            }
        }
        const auto [rec, n] = got;
        if (rec == asio::error::eof) {
            if (burst != nullptr) {
                burst->ended = true;
            }
            if (auto sec = co_await to.shutdown_send()) {
                result.ec = sec;
                from.close();
                to.close();
            }
            co_return result;
        }
        if (rec) {
            result.ec = rec;
            break;
        }
        auto [wec, w] = co_await write_all(to, buf.span().first(n));
        if (wec) {
            result.ec = wec;
            break;
        }
        result.bytes += n;
        if (moved != nullptr) {
            *moved += n;
        }
        want = next_buffer_size(buf.span().size(), n, buffer_size);
        if (want != buf.span().size()) {
            buf.release(); // the next read borrows the new size
        } else if constexpr (waitable_stream<From> && !try_readable_stream<From>) {
            if (n < buf.span().size()) {
                buf.release(); // a short read: the source is probably dry, wait without it
            }
        }
    }
    // An error (reset, protocol violation, cancellation) ends both directions.
    if (burst != nullptr) {
        burst->ended = true;
    }
    from.close();
    to.close();
    co_return result;
}

namespace detail {

// The two directions of relay(), joined by this state rather than by `&&`, whose parallel
// group and per-operand state an idle connection would hold for its whole life. A direction
// whose source can be waited for on its socket (socket_waitable_stream) runs in bursts: a
// plain wait for readability (no coroutine), then a coroutine that copies until the source
// would block, then the wait again; an idle connection holds two socket waits and no frame.
// Any other direction is one coroutine for its whole life. Owned by the directions'
// completion handlers (one outstanding per direction): it completes the relay once both have
// ended, and is deleted without completing (destroying the relay's own handler, hence the
// coroutines the streams live in, after the directions) when the io_context is destroyed
// with them still pending.
template <byte_stream A, byte_stream B, class Handler>
class relay_join {
public:
    relay_join(A& a, B& b, Handler handler)
        : a_(a)
        , b_(b)
        , handler_(std::move(handler)) {}
    relay_join(const relay_join&) = delete;
    relay_join& operator=(const relay_join&) = delete;

    void start(std::size_t buffer_size, std::uint64_t* moved) {
        buffer_size_ = buffer_size;
        moved_ = moved;
        // The relay's cancellation reaches the directions only when it can be cancelled at all:
        // bound, each direction's slot costs an allocation.
        auto slot = asio::get_associated_cancellation_slot(handler_);
        cancellable_ = slot.is_connected();
        if (cancellable_) {
            slot.assign([this](asio::cancellation_type type) {
                cancelled_ = true; // for a direction between two operations (see next())
                for (auto& signal : cancel_) {
                    signal.emit(type);
                }
            });
        }
        next<0>();
        next<1>();
    }

private:
    // A direction's completion handler, for its socket wait and for its copy coroutine.
    class direction {
    public:
        using cancellation_slot_type = asio::cancellation_slot;

        direction(relay_join* join, int which, asio::cancellation_slot slot) noexcept
            : join_(join)
            , which_(which)
            , slot_(slot) {}
        direction(direction&& o) noexcept
            : join_(std::exchange(o.join_, nullptr))
            , which_(o.which_)
            , slot_(o.slot_) {}
        direction& operator=(direction&&) = delete;
        ~direction() {
            if (join_ != nullptr) {
                join_->release(); // never called: the io_context is being destroyed
            }
        }

        cancellation_slot_type get_cancellation_slot() const noexcept { return slot_; }

        void operator()(const error_code& ec) {
            auto* join = std::exchange(join_, nullptr);
            which_ == 0 ? join->template readable<0>(ec) : join->template readable<1>(ec);
        }

        void operator()(std::exception_ptr e, copy_result r) {
            auto* join = std::exchange(join_, nullptr);
            which_ == 0 ? join->template copied<0>(std::move(e), r)
                        : join->template copied<1>(std::move(e), r);
        }

    private:
        relay_join* join_;
        int which_;
        asio::cancellation_slot slot_;
    };

    template <int I>
    auto& from() noexcept {
        if constexpr (I == 0) {
            return a_;
        } else {
            return b_;
        }
    }

    template <int I>
    auto& to() noexcept {
        if constexpr (I == 0) {
            return b_;
        } else {
            return a_;
        }
    }

    template <int I>
    static constexpr bool bursty = socket_waitable_stream<std::conditional_t<I == 0, A, B>>;

    template <int I>
    direction handler() noexcept {
        return direction(this, I, cancellable_ ? cancel_[I].slot() : asio::cancellation_slot());
    }

    // Direction I's next step: a wait while its source has nothing, else a copy.
    template <int I>
    void next() {
        auto& src = from<I>();
        if constexpr (bursty<I>) {
            if (cancelled_) {
                // The relay was cancelled while this direction had no operation in flight.
                readable<I>(asio::error::operation_aborted);
                return;
            }
            if (auto* s = src.wait_socket()) {
                s->async_wait(asio::socket_base::wait_read, handler<I>());
                return;
            }
            spawn<I>();
        } else {
            asio::co_spawn(a_.get_executor(), copy_stream(src, to<I>(), buffer_size_, moved_),
                           handler<I>());
        }
    }

    template <int I>
    void spawn() {
        asio::co_spawn(a_.get_executor(),
                       copy_stream(from<I>(), to<I>(), buffer_size_, moved_, &bursts_[I]),
                       handler<I>());
    }

    // The socket wait of a bursty direction completed.
    template <int I>
    void readable(const error_code& ec) {
        if (!ec && !cancelled_) {
            spawn<I>();
            return;
        }
        // Cancelled (also after the wait had completed), or the socket was closed (the other
        // direction failed): as a copy that failed, this ends both directions.
        a_.close();
        b_.close();
        results_[I].ec = ec ? ec : error_code(asio::error::operation_aborted);
        finish<I>();
    }

    // A copy (a whole direction, or one burst of a bursty one) completed.
    template <int I>
    void copied(std::exception_ptr e, copy_result r) {
        results_[I].bytes += r.bytes;
        results_[I].ec = r.ec;
        if (e) {
            // A direction that threw has not closed the streams: end the other one too.
            a_.close();
            b_.close();
            if (!error_) {
                error_ = std::move(e);
            }
        } else if (bursty<I> && !bursts_[I].ended) {
            next<I>();
            return;
        }
        finish<I>();
    }

    template <int I>
    void finish() {
        ++finished_;
        if (cancellable_) {
            cancel_[I].slot().clear(); // the direction's last operation has completed
        }
        release();
    }

    void release() {
        if (--pending_ != 0) {
            return;
        }
        auto slot = asio::get_associated_cancellation_slot(handler_);
        if (slot.is_connected()) {
            slot.clear();
        }
        if (finished_ != 2) {
            delete this;
            return;
        }
        Handler handler = std::move(handler_);
        const relay_result r{results_[0], results_[1]};
        std::exception_ptr e = std::move(error_);
        delete this;
        std::move(handler)(std::move(e), r);
    }

    A& a_;
    B& b_;
    Handler handler_;
    asio::cancellation_signal cancel_[2];
    copy_result results_[2];
    copy_burst bursts_[2];
    std::exception_ptr error_;
    std::uint64_t* moved_ = nullptr;
    std::size_t buffer_size_ = relay_buffer_size;
    int pending_ = 2;
    int finished_ = 0;
    bool cancellable_ = false;
    bool cancelled_ = false;
};

// Both directions of relay(), each `moved` (optional) counting.
template <byte_stream A, byte_stream B>
asio::awaitable<relay_result> relay_both(A& a, B& b, std::size_t buffer_size,
                                         std::uint64_t* moved) {
    return asio::async_initiate<decltype(asio::use_awaitable),
                                void(std::exception_ptr, relay_result)>(
        [&a, &b, buffer_size, moved](auto handler) {
            using join = relay_join<A, B, std::decay_t<decltype(handler)>>;
            (new join(a, b, std::move(handler)))->start(buffer_size, moved);
        },
        asio::use_awaitable);
}

} // namespace detail

/// Relays `a` <-> `b` until both directions have ended. Each direction is its own loop with its
/// own buffer, so at most one read and one write are outstanding on each stream.
template <byte_stream A, byte_stream B>
asio::awaitable<relay_result> relay(A& a, B& b, std::size_t buffer_size = relay_buffer_size) {
    return detail::relay_both(a, b, buffer_size, nullptr);
}

/// Completes once `progress()` has returned the same value for `limit`, or with
/// asio::error::operation_aborted when cancelled. The value is sampled every quarter of
/// `limit`, so the wait ends between `limit` and 1.25 x `limit` after the last change: one
/// timer wake-up per quarter, and nothing at all on the data path. `progress` is called on the
/// caller's executor.
template <class Progress>
asio::awaitable<error_code> wait_idle(Progress progress,
                                      std::chrono::steady_clock::duration limit) {
    using clock = std::chrono::steady_clock;
    const auto tick = std::max<clock::duration>(limit / 4, std::chrono::milliseconds(1));
    asio::steady_timer timer(co_await asio::this_coro::executor);
    auto last = progress();
    auto quiet_since = clock::now();
    for (;;) {
        timer.expires_at(std::min(quiet_since + limit, clock::now() + tick));
        auto [ec] = co_await timer.async_wait(use_tuple);
        if (ec) {
            co_return ec;
        }
        const auto now = progress();
        if (now != last) {
            last = now;
            quiet_since = clock::now();
        } else if (clock::now() - quiet_since >= limit) {
            co_return error_code{};
        }
    }
}

/// The watchdog of relay(a, b, idle_limit): waits until `moved` stops changing for `limit`,
/// sets `idle` and closes both streams, which ends the copy loops. Should a loop not end
/// within another `limit` (a layer that ignores close), it returns, and relay()'s `||`
/// cancels the loops. Cancelled (the relay ended first): returns at once.
template <byte_stream A, byte_stream B>
asio::awaitable<void> close_when_idle(A& a, B& b, const std::uint64_t& moved,
                                      std::chrono::steady_clock::duration limit, bool& idle) {
    if (co_await wait_idle([&moved] { return moved; }, limit)) {
        co_return;
    }
    idle = true;
    a.close();
    b.close();
    asio::steady_timer grace(co_await asio::this_coro::executor, limit);
    co_await grace.async_wait(use_tuple);
}

namespace detail {

// relay(a, b, idle_limit) with a non-zero limit.
template <byte_stream A, byte_stream B>
asio::awaitable<relay_result>
relay_watched(A& a, B& b, std::chrono::steady_clock::duration idle_limit, std::size_t buffer_size) {
    using namespace asio::experimental::awaitable_operators;
    std::uint64_t moved = 0;
    bool idle = false;
    auto ended = co_await (relay_both(a, b, buffer_size, &moved) ||
                           close_when_idle(a, b, moved, idle_limit, idle));
    relay_result result;
    if (ended.index() == 0) {
        result = std::get<0>(std::move(ended));
    } else {
        result.a_to_b.ec = result.b_to_a.ec = asio::error::timed_out;
    }
    result.idle = idle;
    co_return result;
}

} // namespace detail

/// relay() with an idle timeout: when no byte has moved in either direction for
/// `idle_limit` (see wait_idle), both streams are closed, the directions end with the errors
/// that produces, and the result has `idle` set. A zero `idle_limit` means no timeout. The
/// copy loops only add to a counter; one timer per connection does the checking. A write
/// that takes longer than `idle_limit` (the receiver has stopped reading) counts as idle.
template <byte_stream A, byte_stream B>
asio::awaitable<relay_result> relay(A& a, B& b, std::chrono::steady_clock::duration idle_limit,
                                    std::size_t buffer_size = relay_buffer_size) {
    if (idle_limit <= std::chrono::steady_clock::duration::zero()) {
        return relay(a, b, buffer_size);
    }
    return detail::relay_watched(a, b, idle_limit, buffer_size);
}

} // namespace kaminari::net

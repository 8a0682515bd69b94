#pragma once

// Bidirectional copy between two byte streams until both directions end.

#include <kaminari/net/buffer_pool.hpp>
#include <kaminari/net/stream.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>

#include <cstddef>
#include <cstdint>

namespace kaminari::net {

/// What one direction of a relay moved and how it ended.
struct copy_result {
    std::uint64_t bytes = 0;
    error_code ec; ///< empty when the direction ended with a clean end of stream
};

struct relay_result {
    copy_result a_to_b;
    copy_result b_to_a;
};

/// Default size of each direction's buffer.
inline constexpr std::size_t relay_buffer_size = 16 * 1024;

/// A stream that can wait until a read would make progress without taking a buffer, and read
/// without waiting (asio::error::would_block when nothing has arrived).
template <class S>
concept waitable_stream = byte_stream<S> && requires(S& s, std::span<std::uint8_t> buf) {
    { s.wait_readable() } -> std::same_as<asio::awaitable<error_code>>;
    { s.try_read_some(buf) } -> std::same_as<io_result>;
};

/// One read for copy_stream: a waitable source keeps the buffer only while data flows (reads
/// are tried without the reactor) and waits with no buffer once it runs dry.
template <byte_stream From>
asio::awaitable<io_result> relay_read(From& from, buffer_lease& buf, std::size_t buffer_size) {
    if constexpr (waitable_stream<From>) {
        for (;;) {
            if (!buf) {
                if (auto ec = co_await from.wait_readable()) {
                    co_return io_result{ec, 0};
                }
                buf = borrow_buffer(buffer_size);
            }
            io_result r = from.try_read_some(buf.span());
            if (r.ec != asio::error::would_block && r.ec != asio::error::try_again) {
                co_return r;
            }
            buf.release();
        }
    } else {
        if (!buf) {
            buf = borrow_buffer(buffer_size);
        }
        co_return co_await from.read_some(buf.span());
    }
}

/// Copies `from` to `to` until `from` ends. A clean end of stream half-closes `to`
/// (shutdown_send) and returns; any error closes both streams, so the other direction ends
/// too. The buffer is handed to `to.write` mutable: a websocket client masks it in place.
/// When `from` can wait for readability, the buffer is borrowed from the thread's pool only
/// for one read and its write, so an idle direction holds no buffer.
template <byte_stream From, byte_stream To>
asio::awaitable<copy_result> copy_stream(From& from, To& to, std::size_t buffer_size) {
    copy_result result;
    buffer_lease buf;
    for (;;) {
        auto [rec, n] = co_await relay_read(from, buf, buffer_size);
        if (rec == asio::error::eof) {
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
    }
    // An error (reset, protocol violation, cancellation) ends both directions.
    from.close();
    to.close();
    co_return result;
}

/// Relays `a` <-> `b` until both directions have ended. Each direction is its own loop with its
/// own buffer, so at most one read and one write are outstanding on each stream.
template <byte_stream A, byte_stream B>
asio::awaitable<relay_result> relay(A& a, B& b, std::size_t buffer_size = relay_buffer_size) {
    using namespace asio::experimental::awaitable_operators;
    auto [ab, ba] = co_await (copy_stream(a, b, buffer_size) && copy_stream(b, a, buffer_size));
    co_return relay_result{ab, ba};
}

} // namespace kaminari::net

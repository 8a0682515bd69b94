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

/// A stream that can wait until a read would make progress without taking a buffer.
template <class S>
concept waitable_stream = byte_stream<S> && requires(S& s) {
    { s.wait_readable() } -> std::same_as<asio::awaitable<error_code>>;
};

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
        if constexpr (waitable_stream<From>) {
            buf.release();
            if (auto wec = co_await from.wait_readable()) {
                result.ec = wec;
                break;
            }
        }
        if (!buf) {
            buf = borrow_buffer(buffer_size);
        }
        const std::span<std::uint8_t> whole = buf.span();
        auto [rec, n] = co_await from.read_some(whole);
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
        auto [wec, w] = co_await write_all(to, whole.first(n));
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

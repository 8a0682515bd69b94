#pragma once

// The byte_stream concept every transport layer (tcp, tls, ws) models, and tcp_stream, the
// bottom layer. Layers own their next layer by value and only move bytes; protocol work lives
// in the sans-I/O codec and TLS engine.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/system/error_code.hpp>

#include <array>
#include <cerrno>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <sys/socket.h>
#include <sys/types.h>

namespace kaminari {
namespace asio = boost::asio;
using error_code = boost::system::error_code;
} // namespace kaminari

namespace kaminari::net {

/// Outcome of one I/O operation: an error (asio::error::eof at end of stream) or a byte count.
struct io_result {
    error_code ec;
    std::size_t n = 0;
};

/// Completion token that turns Asio errors into values: `auto [ec, n] = co_await op(...,
/// use_tuple)`.
inline constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

/// A bidirectional byte stream driven by coroutines.
///
/// - `read_some(buf)`: reads at least one byte into `buf` (non-empty); end of stream is
///   `asio::error::eof` with n == 0, never a successful 0.
/// - `write(head, body)`: writes all of `head` then all of `body` as one gather where the layer
///   can (one syscall for tcp). `body` may be modified in place (a websocket client masks it);
///   `head` is never modified. On success n == head.size() + body.size().
/// - `shutdown_send()`: half-close: no more writes; the peer reads end of stream, and reads on
///   this stream keep working.
/// - `close()`: abort both directions now; pending operations complete with an error.
///
/// Thread safety: at most one read and one write may be outstanding at a time, from the
/// stream's own executor (one thread); the relay relies on exactly that.
template <class S>
concept byte_stream = requires(S& s, std::span<std::uint8_t> buf,
                               std::span<const std::uint8_t> head) {
    { s.get_executor() } -> std::convertible_to<asio::any_io_executor>;
    { s.read_some(buf) } -> std::same_as<asio::awaitable<io_result>>;
    { s.write(head, buf) } -> std::same_as<asio::awaitable<io_result>>;
    { s.shutdown_send() } -> std::same_as<asio::awaitable<error_code>>;
    { s.close() }
    noexcept;
};

/// Writes all of `body` through `s` (no head).
template <byte_stream S>
asio::awaitable<io_result> write_all(S& s, std::span<std::uint8_t> body) {
    return s.write(std::span<const std::uint8_t>{}, body);
}

/// The bottom layer: a connected TCP socket.
class tcp_stream {
public:
    using executor_type = asio::any_io_executor;

    explicit tcp_stream(asio::ip::tcp::socket socket) noexcept
        : socket_(std::move(socket)) {}

    executor_type get_executor() noexcept { return socket_.get_executor(); }
    asio::ip::tcp::socket& socket() noexcept { return socket_; }
    const asio::ip::tcp::socket& socket() const noexcept { return socket_; }

    /// Completes when the socket is readable (data, end of stream or an error is pending).
    asio::awaitable<error_code> wait_readable() {
        auto [ec] = co_await socket_.async_wait(asio::ip::tcp::socket::wait_read, use_tuple);
        co_return ec;
    }

    /// The socket whose readability wait_readable() waits for. A caller can wait on it
    /// directly, with one coroutine frame fewer (an idle relay direction holds its frames).
    asio::ip::tcp::socket* wait_socket() noexcept { return &socket_; }

    /// Reads what has already arrived, without waiting: asio::error::would_block when nothing
    /// has, asio::error::eof at the end of the stream.
    /// (MSG_DONTWAIT: the socket's own mode is left alone, so this costs no FIONBIO.)
    io_result try_read_some(std::span<std::uint8_t> buf) noexcept {
        if (buf.empty()) {
            return {};
        }
        for (;;) {
            const ssize_t n = ::recv(socket_.native_handle(), buf.data(), buf.size(), MSG_DONTWAIT);
            if (n > 0) {
                return {{}, static_cast<std::size_t>(n)};
            }
            if (n == 0) {
                return {asio::error::eof, 0};
            }
            if (errno != EINTR) {
                return {error_code(errno, boost::system::system_category()), 0};
            }
        }
    }

    asio::awaitable<io_result> read_some(std::span<std::uint8_t> buf) {
        auto [ec, n] =
            co_await socket_.async_read_some(asio::buffer(buf.data(), buf.size()), use_tuple);
        co_return io_result{ec, n};
    }

    asio::awaitable<io_result> write(std::span<const std::uint8_t> head,
                                     std::span<std::uint8_t> body) {
        std::array<asio::const_buffer, 2> bufs{asio::buffer(head.data(), head.size()),
                                               asio::buffer(body.data(), body.size())};
        auto [ec, n] = co_await asio::async_write(socket_, bufs, use_tuple);
        co_return io_result{ec, n};
    }

    asio::awaitable<error_code> shutdown_send() {
        error_code ec;
        socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
        co_return ec;
    }

    void close() noexcept {
        error_code ignored;
        socket_.close(ignored);
    }

private:
    asio::ip::tcp::socket socket_;
};

static_assert(byte_stream<tcp_stream>);

/// The TCP socket at the bottom of a stream (tcp_stream, tls_stream<tcp_stream>, ...).
inline asio::ip::tcp::socket& bottom_socket(tcp_stream& s) noexcept {
    return s.socket();
}
template <class Layer>
asio::ip::tcp::socket& bottom_socket(Layer& s) noexcept {
    return bottom_socket(s.next_layer());
}

} // namespace kaminari::net

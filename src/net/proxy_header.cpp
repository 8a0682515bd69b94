#include "kaminari/net/proxy_header.hpp"

#include <kaminari/net/timeout.hpp>

#include <boost/asio/read.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <string_view>
#include <sys/socket.h>

namespace kaminari::net {

namespace {

using tcp = asio::ip::tcp;

constexpr std::size_t v1_max = 107;

asio::awaitable<error_code> read_exact(tcp::socket& s, std::span<std::uint8_t> buf) {
    auto [ec, n] = co_await asio::async_read(s, asio::buffer(buf.data(), buf.size()), use_tuple);
    co_return ec;
}

} // namespace

asio::awaitable<std::pair<error_code, codec::proxy_header>>
read_proxy_header(tcp::socket& socket, std::chrono::milliseconds limit) {
    using status = codec::proxy_header::status;
    const deadline timer(socket.get_executor(), limit, [&socket] {
        error_code ignored;
        socket.cancel(ignored);
    });
    auto failed = [&](error_code ec) {
        return std::pair{timer.expired() ? error_code(asio::error::timed_out) : ec,
                         codec::proxy_header{}};
    };
    std::array<std::uint8_t, codec::max_proxy_header_size> buf;
    // Every header is at least 15 bytes (`PROXY UNKNOWN\r\n`), and 8 tell v1 from v2.
    std::size_t have = 8;
    if (auto ec = co_await read_exact(socket, std::span(buf).first(have))) {
        co_return failed(ec);
    }
    for (;;) {
        codec::proxy_header h = codec::parse_proxy_header(std::span(buf).first(have));
        if (h.st != status::need_more) {
            co_return std::pair{error_code{}, std::move(h)};
        }
        if (h.version == 2) {
            // Binary: its length says exactly how many bytes are still to come.
            const std::size_t want = std::min(std::max(h.size, have + 1), buf.size());
            if (auto ec = co_await read_exact(socket, std::span(buf).subspan(have, want - have))) {
                co_return failed(ec);
            }
            have = want;
            continue;
        }
        // Text: the line ends at its CRLF, which only the bytes tell. Look at what has arrived
        // without taking it, then take it up to the CRLF, or all of it when there is none yet
        // (every byte before the CRLF is the header's).
        auto [wec] = co_await socket.async_wait(tcp::socket::wait_read, use_tuple);
        if (wec) {
            co_return failed(wec);
        }
        const ssize_t k = ::recv(socket.native_handle(), buf.data() + have, v1_max - have,
                                 MSG_PEEK | MSG_DONTWAIT);
        if (k == 0) {
            co_return failed(asio::error::eof);
        }
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                continue;
            }
            co_return failed(error_code(errno, boost::system::system_category()));
        }
        const std::string_view seen(reinterpret_cast<const char*>(buf.data()),
                                    have + static_cast<std::size_t>(k));
        const std::size_t crlf = seen.find("\r\n", have - 1);
        const std::size_t take =
            crlf == std::string_view::npos ? static_cast<std::size_t>(k) : crlf + 2 - have;
        if (auto ec = co_await read_exact(socket, std::span(buf).subspan(have, take))) {
            co_return failed(ec);
        }
        have += take;
    }
}

} // namespace kaminari::net

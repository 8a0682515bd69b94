#pragma once

// What kaminaric's and kaminaris's UDP halves (`udp`, SIP003u) share: the reader that takes
// length-prefixed datagrams (codec/udp_frame.hpp) off a tunnel stream, the socket buffer
// sizing, and the per-process cap on associations.

#include <kaminari/codec/udp_frame.hpp>
#include <kaminari/net/stream.hpp>

#include <boost/asio/ip/udp.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace kaminari::net {

/// Associations (client and server side together) open at once in one process. At the cap a
/// new association is refused (kaminaric drops the datagram, kaminaris closes the connection),
/// with a log line at most once a second.
inline constexpr std::size_t max_udp_associations = 4096;

/// Datagrams kaminaric queues per association while its connection is busy or still opening;
/// past either bound a datagram is dropped (counted, logged at debug).
inline constexpr std::size_t udp_queue_datagrams = 64;
inline constexpr std::size_t udp_queue_bytes = 512 * 1024;

/// Asks for SO_RCVBUF and SO_SNDBUF as large as the system allows (net.core.rmem_max and
/// wmem_max; the kernel caps a request at those). Failures are ignored: the defaults remain.
void tune_udp_socket(asio::ip::udp::socket& s) noexcept;

/// Takes a slot among max_udp_associations; false (logged at most once a second) when full.
bool claim_udp_association() noexcept;
/// Gives back a slot taken by claim_udp_association().
void release_udp_association() noexcept;
/// Associations open now in this process.
std::size_t udp_associations() noexcept;

/// `ip:port` of a UDP endpoint, for the logs.
std::string to_string(const asio::ip::udp::endpoint& ep);

/// Why udp_frame_reader::next() stopped.
enum class udp_read_end : std::uint8_t {
    none,      ///< a datagram was read
    closed,    ///< the stream ended (or failed) between frames
    truncated, ///< the stream ended inside a frame
    too_large, ///< a length prefix claimed more than codec::max_udp_datagram
};

/// Reassembles datagrams from a stream's reads. The buffer starts at 16 KiB and grows only as
/// far as the largest frame seen needs (at most codec::max_udp_frame).
class udp_frame_reader {
public:
    struct result {
        udp_read_end end = udp_read_end::none;
        error_code ec; ///< the stream's error when closed or truncated
        /// The datagram when end == none: valid until the next call.
        std::span<std::uint8_t> datagram{};
    };

    /// Bytes already read from the stream (behind a marker): they are decoded first.
    void preload(std::span<const std::uint8_t> bytes) {
        buf_.assign(bytes.begin(), bytes.end());
        begin_ = 0;
        end_ = bytes.size();
    }

    template <byte_stream S>
    asio::awaitable<result> next(S& s) {
        for (;;) {
            const auto r = codec::decode_udp_frame(
                std::span<const std::uint8_t>(buf_).subspan(begin_, end_ - begin_));
            if (r.status == codec::udp_frame_status::ok) {
                const std::size_t at = begin_ + codec::udp_header_size;
                begin_ += r.size;
                co_return result{
                    udp_read_end::none, {}, std::span(buf_).subspan(at, r.datagram.size())};
            }
            if (r.status == codec::udp_frame_status::too_large) {
                co_return result{udp_read_end::too_large, {}, {}};
            }
            // Need more: keep the partial frame at the front, with room for all of it.
            if (begin_ != 0) {
                std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
                end_ -= begin_;
                begin_ = 0;
            }
            if (buf_.size() < std::max(r.size, initial_size)) {
                buf_.resize(std::max(r.size, initial_size));
            }
            if (end_ == buf_.size()) {
                buf_.resize(std::min(buf_.size() * 2, codec::max_udp_frame));
            }
            auto [ec, n] = co_await s.read_some(std::span(buf_).subspan(end_));
            if (ec) {
                co_return result{
                    end_ == 0 ? udp_read_end::closed : udp_read_end::truncated, ec, {}};
            }
            end_ += n;
        }
    }

private:
    static constexpr std::size_t initial_size = 16 * 1024;
    std::vector<std::uint8_t> buf_;
    std::size_t begin_ = 0;
    std::size_t end_ = 0;
};

} // namespace kaminari::net

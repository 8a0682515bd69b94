#pragma once

// Definitions of ws_stream<Next> (included at the bottom of net/ws_stream.hpp).

#include <kaminari/codec/bytes.hpp>
#include <kaminari/net/mask_keys.hpp>

#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/this_coro.hpp>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <memory>
#include <optional>
#include <sys/ioctl.h>
#include <utility>

namespace kaminari::net {

template <byte_stream Next>
ws_stream<Next>::ws_stream(Next next, codec::role local, codec::mask_mode mode)
    : next_(std::move(next))
    , decoder_(local)
    , encoder_(local, mode,
               local == codec::role::client && mode == codec::mask_mode::fixed
                   ? next_mask_key()
                   : codec::mask_key{}) {
}

template <byte_stream Next>
typename ws_stream<Next>::control_buffers& ws_stream<Next>::control() {
    if (!control_) {
        control_ = std::make_unique<control_buffers>();
    }
    return *control_;
}

template <byte_stream Next>
void ws_stream<Next>::set_leftover(std::span<const std::uint8_t> bytes) {
    leftover_.assign(bytes.begin(), bytes.end());
    leftover_pos_ = 0;
}

template <byte_stream Next>
asio::awaitable<io_result> ws_stream<Next>::read_some(std::span<std::uint8_t> buf) {
    assert(!buf.empty()); // byte_stream precondition: an empty read would spin
    for (;;) {
        if (decoder_.closed()) {
            co_return io_result{asio::error::eof, 0};
        }
        if (decoder_.error() != codec::errc::ok) {
            co_return io_result{decoder_.error(), 0};
        }
        std::size_t n = 0;
        if (leftover_pos_ < leftover_.size()) {
            n = std::min(buf.size(), leftover_.size() - leftover_pos_);
            std::memcpy(buf.data(), leftover_.data() + leftover_pos_, n);
            leftover_pos_ += n;
            if (leftover_pos_ == leftover_.size()) {
                std::vector<std::uint8_t>().swap(leftover_);
                leftover_pos_ = 0;
            }
        } else {
            auto [ec, got] = co_await next_.read_some(buf);
            bytes_in_ += got;
            if (ec) {
                // End of stream inside a frame loses data: report it rather than a clean EOF.
                if (ec == asio::error::eof && !decoder_.idle()) {
                    ec = codec::errc::truncated_frame;
                }
                co_return io_result{ec, 0};
            }
            n = got;
        }

        const codec::decode_step step = decoder_.feed(buf.first(n));
        if (step.err != codec::errc::ok) {
            queue_close(step.err == codec::errc::text_frame ? codec::close_code::unsupported_data
                                                            : codec::close_code::protocol_error);
            co_await send_control_now(); // best effort: the connection ends either way
            co_return io_result{step.err, 0};
        }
        if (step.ping && !close_sent_ && !shut_) {
            const auto ping = decoder_.ping_payload();
            std::memcpy(control().pong.data(), ping.data(), ping.size());
            pong_len_ = static_cast<std::uint8_t>(ping.size());
            pong_pending_ = true;
        }
        if (step.close) {
            // The peer's half of the stream has ended. Our close reply (echoing its code, as
            // RFC 6455 §5.5.1 suggests) waits until our own sending side is done, which §5.5.1
            // allows ("MAY delay sending a Close frame until its current message is sent"):
            // data still flowing our way is not cut off. shutdown_send() sends it.
            close_received_ = true;
            if (!close_pending_ && !close_sent_) {
                close_code_ = decoder_.close_code();
            }
            if (shut_) {
                // Both close frames have crossed: the TCP (or TLS) stream can end now.
                (void)co_await next_.shutdown_send();
            }
        }
        if (step.ping) {
            const error_code ec = co_await send_control_now();
            if (ec && step.payload == 0 && !step.close) {
                co_return io_result{ec, 0};
            }
        }
        if (step.payload != 0) {
            co_return io_result{{}, step.payload};
        }
        if (step.close) {
            co_return io_result{asio::error::eof, 0};
        }
    }
}

template <byte_stream Next>
asio::awaitable<io_result> ws_stream<Next>::write(std::span<const std::uint8_t> head,
                                                  std::span<std::uint8_t> body) {
    if (!head.empty()) {
        auto r = co_await write_copied(head);
        if (r.ec) {
            co_return r;
        }
    }
    if (!body.empty()) {
        auto r = co_await write_frame(body);
        if (r.ec) {
            co_return io_result{r.ec, 0};
        }
    }
    co_return io_result{{}, head.size() + body.size()};
}

template <byte_stream Next>
asio::awaitable<io_result> ws_stream<Next>::write_copied(std::span<const std::uint8_t> head) {
    // `head` is const, so a masking client cannot transform it in place; copy it in chunks.
    std::array<std::uint8_t, 1024> chunk;
    while (!head.empty()) {
        const std::size_t n = std::min(head.size(), chunk.size());
        std::memcpy(chunk.data(), head.data(), n);
        auto r = co_await write_frame(std::span(chunk.data(), n));
        if (r.ec) {
            co_return io_result{r.ec, 0};
        }
        head = head.subspan(n);
    }
    co_return io_result{};
}

template <byte_stream Next>
asio::awaitable<io_result> ws_stream<Next>::write_frame(std::span<std::uint8_t> payload) {
    // Drawn before taking the flag: it may throw.
    const codec::mask_key key = encoder_.needs_frame_key() ? next_mask_key() : codec::mask_key{};
    if (const error_code ec = co_await acquire_write()) {
        co_return io_result{ec, 0};
    }
    const write_lock lock(*this);
    if (close_sent_ || shut_) {
        co_return io_result{
            close_sent_ ? error_code(codec::errc::closed) : error_code(asio::error::shut_down), 0};
    }
    const auto head = encoder_.encode(codec::opcode::binary, payload, key);
    auto [ec, n] = co_await next_.write(head, payload);
    if (!ec) {
        // Control frames queued by the read side go out right after this frame.
        ec = co_await flush_control();
    }
    co_return io_result{ec, ec ? 0 : payload.size()};
}

template <byte_stream Next>
asio::awaitable<error_code> ws_stream<Next>::acquire_write() {
    while (writing_) {
        if (!write_wait_) {
            write_wait_ = std::make_unique<asio::steady_timer>(
                next_.get_executor(), asio::steady_timer::time_point::max());
        }
        co_await write_wait_->async_wait(use_tuple);
        // The waiter itself was cancelled (e.g. by `&&` in the relay), or the stream closed.
        const auto cs = co_await asio::this_coro::cancellation_state;
        if (closed_ || cs.cancelled() != asio::cancellation_type::none) {
            co_return error_code(asio::error::operation_aborted);
        }
    }
    writing_ = true;
    co_return error_code{};
}

template <byte_stream Next>
void ws_stream<Next>::release_write() noexcept {
    writing_ = false;
    if (write_wait_) {
        write_wait_->cancel();
    }
}

template <byte_stream Next>
void ws_stream<Next>::queue_close(std::uint16_t code) noexcept {
    if (!close_sent_ && !close_pending_) {
        close_pending_ = true;
        close_code_ = code;
    }
}

template <byte_stream Next>
asio::awaitable<error_code> ws_stream<Next>::flush_control() {
    // Precondition: the write flag is held.
    while ((pong_pending_ || ping_pending_ || close_pending_) && !close_sent_ && !shut_) {
        codec::opcode op = codec::opcode::pong;
        std::size_t len = 0;
        if (ping_pending_) {
            ping_pending_ = false;
            op = codec::opcode::ping;
        } else if (pong_pending_) {
            pong_pending_ = false;
            len = pong_len_;
            std::memcpy(control().out.data(), control().pong.data(), len);
        } else {
            close_pending_ = false;
            close_sent_ = true;
            op = codec::opcode::close;
            if (close_code_ != codec::close_code::no_status) {
                codec::store_u16be(control().out.data(), close_code_);
                len = 2;
            }
        }
        const codec::mask_key key =
            encoder_.needs_frame_key() ? next_mask_key() : codec::mask_key{};
        const std::span<std::uint8_t> payload(control().out.data(), len);
        const auto head = encoder_.encode(op, payload, key);
        auto [ec, n] = co_await next_.write(head, payload);
        if (ec) {
            co_return ec;
        }
    }
    pong_pending_ = false;
    ping_pending_ = false;
    close_pending_ = false;
    co_return error_code{};
}

template <byte_stream Next>
asio::awaitable<error_code> ws_stream<Next>::send_ping() {
    if (close_sent_ || shut_ || closed_) {
        co_return codec::errc::closed;
    }
    ping_pending_ = true;
    co_return co_await send_control_now();
}

template <byte_stream Next>
asio::awaitable<error_code> ws_stream<Next>::send_control_now() {
    if (writing_) {
        co_return error_code{}; // the writer in progress sends it after its frame
    }
    writing_ = true;
    const write_lock lock(*this);
    co_return co_await flush_control();
}

namespace detail {

// Bytes the kernel still holds for sending (unsent or unacknowledged) on the TCP connection
// under `s`; 0 when there is none to ask (an in-memory stream in tests).
template <class S>
int unacked_bytes(S& s) noexcept {
    if constexpr (requires { s.socket().native_handle(); }) {
        int n = 0;
        if (::ioctl(s.socket().native_handle(), TIOCOUTQ, &n) != 0) {
            return 0;
        }
        return n;
    } else if constexpr (requires { s.next_layer(); }) {
        return unacked_bytes(s.next_layer());
    } else {
        return 0;
    }
}

} // namespace detail

template <byte_stream Next>
asio::awaitable<void> ws_stream<Next>::linger() {
    using clock = std::chrono::steady_clock;
    constexpr auto poll = std::chrono::milliseconds(20);
    constexpr auto max_unacked_wait = std::chrono::seconds(10);
    asio::steady_timer timer(next_.get_executor());
    const auto start = clock::now();
    std::optional<clock::time_point> acked_at;
    while (!close_received_ && !closed_) {
        const auto now = clock::now();
        if (!acked_at && (detail::unacked_bytes(next_) == 0 || now - start >= max_unacked_wait)) {
            acked_at = now;
        }
        if (acked_at && now - *acked_at >= close_linger_) {
            break;
        }
        timer.expires_after(poll);
        if (auto [ec] = co_await timer.async_wait(use_tuple); ec) {
            break; // cancelled: the relay is being torn down
        }
    }
}

template <byte_stream Next>
asio::awaitable<error_code> ws_stream<Next>::shutdown_send() {
    if (close_linger_.count() > 0 && !close_received_ && !shut_) {
        co_await linger();
    }
    if (const error_code ec = co_await acquire_write()) {
        co_return ec;
    }
    const write_lock lock(*this);
    if (shut_) {
        co_return error_code{};
    }
    // Half-close the websocket way: a close frame ends our direction and passes through every
    // proxy, where a bare TCP FIN under an upgraded connection makes nginx drop both
    // directions. The peer's close reply ends the other direction.
    queue_close(close_received_ ? close_code_ : codec::close_code::normal);
    error_code ec = co_await flush_control();
    shut_ = true;
    if (!ec && close_received_) {
        ec = co_await next_.shutdown_send();
    }
    co_return ec;
}

template <byte_stream Next>
void ws_stream<Next>::close() noexcept {
    closed_ = true;
    next_.close();
    if (write_wait_) {
        write_wait_->cancel();
    }
}

} // namespace kaminari::net

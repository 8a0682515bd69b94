#pragma once

// The websocket layer (RFC 6455): a byte_stream over another byte_stream (tcp_stream, or
// tls_stream for wss). It only moves bytes between the codec (frame_decoder, frame_encoder)
// and its next layer; the opening handshake is in ws_handshake.hpp.

#include <kaminari/codec/frame.hpp>
#include <kaminari/codec/frame_decoder.hpp>
#include <kaminari/codec/frame_encoder.hpp>
#include <kaminari/codec/mask.hpp>
#include <kaminari/net/stream.hpp>
#include <kaminari/net/ws_error.hpp>

#include <boost/asio/steady_timer.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace kaminari::net {

/// A websocket connection that is itself a byte_stream, so it can sit under the relay.
///
/// Reading returns the unmasked payload of binary (and continuation) frames as one byte
/// stream: frame boundaries and FIN are not visible. A ping is answered with a pong, a pong is
/// ignored, and after a close frame reads return `asio::error::eof`; the close is answered
/// (echoing its code) when this side's sending ends, by shutdown_send(). A text frame is a protocol
/// violation: a close frame with code 1003 is sent and the read fails with
/// `codec::errc::text_frame`; other framing errors send close 1002. Every such error compares equal
/// to `ws_condition::protocol_violation`.
///
/// Writing sends one binary frame with FIN set per write() call: the frame header and the
/// payload go to the next layer in one gather write, with no copy and no allocation. A client
/// in `mask_mode::fixed` or `standard` masks the payload in place, in the caller's buffer.
/// Control frames (pong, close) are never written inside a data frame: there is one writer at
/// a time; a control frame the read side must send while a data write is in progress is queued
/// and sent by that write right after its frame; when no write is in progress, the read side
/// sends it at once while holding the same write flag (a write() arriving meanwhile waits).
///
/// Half-close is carried by close frames (RFC 6455 §5.5.1): shutdown_send() sends a close frame
/// (1000, or the peer's code when it closed first) and the peer reads end of stream while its
/// own direction keeps flowing until it answers with its close frame. The next layer's sending
/// side (TCP FIN, TLS close_notify) is shut down only once both close frames have crossed, so
/// proxies that tear down an upgraded connection on the first FIN (nginx) never cut data off.
/// A peer that half-closes with a bare FIN instead (the original kaminari) reads as end of
/// stream too. close() closes the next layer.
///
/// Ownership: the stream owns its next layer by value (`next_layer()`). It must not be moved
/// or destroyed while an operation is pending.
///
/// Thread safety: one read_some() and one write()/shutdown_send() may be outstanding at a
/// time, all from the executor of the next layer (one thread). `Next` must support exactly
/// that (one read and one write at once).
template <byte_stream Next>
class ws_stream {
public:
    using next_layer_type = Next;
    using executor_type = asio::any_io_executor;

    /// Wraps `next`, which must already carry an open websocket connection or be about to run
    /// the handshake (ws_client_handshake / ws_server_handshake). `local` decides who masks;
    /// `mode` is used only by a client. A `fixed` client draws its key here, which throws only
    /// if OpenSSL's RNG fails.
    ws_stream(Next next, codec::role local, codec::mask_mode mode = codec::mask_mode::skip);

    executor_type get_executor() { return next_.get_executor(); }
    Next& next_layer() noexcept { return next_; }
    const Next& next_layer() const noexcept { return next_; }
    codec::role role() const noexcept { return encoder_.local_role(); }
    codec::mask_mode mode() const noexcept { return encoder_.mode(); }

    /// Reads at least one payload byte into `buf` (non-empty). `buf` is also the decoding
    /// scratch space: control frames and headers pass through it. Returns `asio::error::eof`
    /// after a close frame or at a clean end of the next layer between frames;
    /// `codec::errc::truncated_frame` when the next layer ends inside a frame; a codec::errc
    /// for a framing error (after trying to send the matching close frame); or the next layer's
    /// error.
    asio::awaitable<io_result> read_some(std::span<std::uint8_t> buf);

    /// Completes when read_some() can make progress: at once when bytes from the handshake
    /// are buffered or the stream has ended or failed, otherwise when the next layer is
    /// readable. Lets the relay hold no buffer while the connection is idle.
    asio::awaitable<error_code> wait_readable() requires requires(Next& n) { n.wait_readable(); }
    {
        if (read_ready()) {
            co_return error_code{};
        }
        co_return co_await next_.wait_readable();
    }

    /// Over TCP: the socket to wait on until read_some() can make progress (as
    /// tcp_stream::wait_socket()), or nullptr when it can at once.
    asio::ip::tcp::socket* wait_socket() noexcept requires std::same_as<Next, tcp_stream> {
        return read_ready() ? nullptr : &next_.socket();
    }

    /// Sends `head` then `body` as websocket payload: `body` as one binary frame (masked in
    /// place when the client mode asks for it), `head`, which is const, as frames of its own
    /// copied through a small buffer (the relay passes an empty head). Nothing is sent when both
    /// are empty. Returns n == head.size() + body.size() on success; `codec::errc::closed`
    /// once a close frame has been sent; or the next layer's error. May throw only if OpenSSL's
    /// RNG fails (standard mode).
    asio::awaitable<io_result> write(std::span<const std::uint8_t> head,
                                     std::span<std::uint8_t> body);

    /// Half-close: waits for any frame in flight, then sends a close frame (the peer's code if
    /// it closed first, else 1000); if the peer's close has arrived too, also shuts down the
    /// next layer's sending side. Later writes fail with `codec::errc::closed`; pongs are
    /// dropped. Idempotent.
    asio::awaitable<error_code> shutdown_send();

    /// Bytes read from the next layer so far (frames of any kind, pongs included).
    std::uint64_t bytes_in() const noexcept { return bytes_in_; }

    /// Sends a ping frame (empty payload): at once when no frame is being written, otherwise
    /// right after the frame in progress. May run beside one read_some() and one write().
    /// `codec::errc::closed` once a close frame has been sent.
    asio::awaitable<error_code> send_ping();

    /// Closes the next layer now; pending operations complete with its error.
    void close() noexcept;

    /// Makes shutdown_send(), when the peer has not closed first, wait before its close frame:
    /// until the TCP connection has no unacknowledged bytes (at most 10 s), then `linger` more,
    /// ending early when the peer's close arrives or the stream is closed. For peers that
    /// take a close frame as an error and drop what they still hold for their app
    /// (v2ray-plugin); a kaminari peer reads it as end of stream, and gets no linger. Zero (the
    /// default): no wait.
    void set_close_linger(std::chrono::milliseconds linger) noexcept { close_linger_ = linger; }

    /// The linger set by set_close_linger(): non-zero for a peer that is not kaminari (the
    /// server handshake sets it when the client did not announce `Kaminari-Half-Close`).
    std::chrono::milliseconds close_linger() const noexcept { return close_linger_; }

    /// Bytes already read from the next layer that belong to the websocket stream (what
    /// followed the HTTP head in the handshake's last read). read_some() decodes them before
    /// reading from the next layer. Called by the handshake functions; copies `bytes`.
    void set_leftover(std::span<const std::uint8_t> bytes);

private:
    // Releases the write flag when a coroutine holding it ends (also by exception).
    class write_lock {
    public:
        explicit write_lock(ws_stream& s) noexcept
            : s_(s) {}
        write_lock(const write_lock&) = delete;
        write_lock& operator=(const write_lock&) = delete;
        ~write_lock() { s_.release_write(); }

    private:
        ws_stream& s_;
    };

    // Bytes from the handshake are buffered, or the stream has ended or failed.
    bool read_ready() const noexcept {
        return leftover_pos_ < leftover_.size() || decoder_.closed() ||
               decoder_.error() != codec::errc::ok;
    }
    asio::awaitable<void> linger();
    asio::awaitable<error_code> acquire_write();
    void release_write() noexcept;
    asio::awaitable<io_result> write_frame(std::span<std::uint8_t> payload);
    asio::awaitable<io_result> write_copied(std::span<const std::uint8_t> head);
    asio::awaitable<error_code> flush_control();
    asio::awaitable<error_code> send_control_now();
    void queue_close(std::uint16_t code) noexcept;

    Next next_;
    codec::frame_decoder decoder_;
    codec::frame_encoder encoder_;
    // Cancelled to wake a write() waiting for the flag; made by the first such write, as most
    // connections never have one.
    std::unique_ptr<asio::steady_timer> write_wait_;
    std::chrono::milliseconds close_linger_{0};
    bool writing_ = false; // a frame is being written to next_
    bool pong_pending_ = false;
    bool ping_pending_ = false;
    std::uint64_t bytes_in_ = 0;
    bool close_pending_ = false;
    bool close_sent_ = false;
    bool close_received_ = false; // the peer's close frame has been read
    bool shut_ = false;
    bool closed_ = false;
    std::uint8_t pong_len_ = 0;
    std::uint16_t close_code_ = 0; // code of the pending close; no_status: empty payload
    // Payloads of control frames to send, allocated by the first one (a pong, or the closing
    // close frame): an idle connection holds none.
    struct control_buffers {
        std::array<std::uint8_t, codec::max_control_payload> pong{};
        std::array<std::uint8_t, codec::max_control_payload> out{};
    };
    control_buffers& control();
    std::unique_ptr<control_buffers> control_;
    std::vector<std::uint8_t> leftover_; // released once drained
    std::size_t leftover_pos_ = 0;
};

static_assert(byte_stream<ws_stream<tcp_stream>>);

} // namespace kaminari::net

#include <kaminari/net/impl/ws_stream.hpp>

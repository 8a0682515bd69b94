#pragma once

// TLS as a byte_stream layer: drives a tls::engine (an SSL* on a BIO pair, no I/O) over the next
// layer. This adapter is the only TLS code that awaits; it moves ciphertext between the engine's
// BIO buffers and Next without staging copies.

#include <kaminari/net/stream.hpp>
#include <kaminari/tls/engine.hpp>

#include <boost/asio/steady_timer.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace kaminari::net {

/// A TLS connection over `Next`, itself a byte_stream (so ws_stream<tls_stream<tcp_stream>> is
/// wss). Owns `Next` by value; build the engine with tls::client_context::make_engine() or
/// tls::server_context::make_engine(), then call handshake_client() or handshake_server()
/// once before anything else.
///
/// End of stream: read_some() returns asio::error::eof when the peer sends close_notify, and
/// also when the next layer ends without one (the tunnel carries its own framing, so a
/// truncation is not treated as an attack; it is a normal end). shutdown_send() sends
/// close_notify, TLS's own half-close; reads keep working, and a peer that received
/// close_notify can still write back (TLS 1.3 and OpenSSL's TLS 1.2 both allow it). The next
/// layer is not half-closed: its FIN goes out when the connection closes. A FIN right behind
/// close_notify makes some peers (stunnel 5.68) stop forwarding what they still had to send.
///
/// Thread safety: like every byte_stream, at most one read_some() and one write() (or
/// shutdown_send()) may be outstanding at once, all on the stream's executor (one thread).
/// Both directions reach one SSL*, but engine calls are synchronous and so never interleave;
/// only ciphertext transfers await. Writes to the next layer are serialised by a write flag:
/// write() and shutdown_send() hold it while they encrypt and flush; when a read produces
/// output (a TLS 1.3 KeyUpdate answer, an alert) it flushes that output itself only if no write
/// holds the flag, otherwise the running write's flush loop sends it, and a read that needs the
/// output buffer drained waits for the flag. So at most one Next::write() is ever in flight, and
/// at most one Next::read_some() (from the read side). The stream must not be moved or destroyed
/// while an operation is pending.
template <byte_stream Next>
class tls_stream {
public:
    using executor_type = asio::any_io_executor;
    using next_layer_type = Next;

    /// Takes ownership of a connected `next` and of `engine` (not yet handshaken).
    tls_stream(Next next, tls::engine engine);

    tls_stream(tls_stream&&) = default;

    executor_type get_executor() noexcept { return next_.get_executor(); }
    Next& next_layer() noexcept { return next_; }
    const Next& next_layer() const noexcept { return next_; }
    tls::engine& engine() noexcept { return engine_; }
    const tls::engine& engine() const noexcept { return engine_; }

    /// Client handshake that also delivers `first_data` (the app's first bytes, may be empty;
    /// the caller keeps it alive until this completes, it is not modified). If the engine has a
    /// resumable session that allows early data and early data is enabled, up to the session's
    /// limit of `first_data` goes out as TLS 1.3 early data with the ClientHello (0-RTT). Bytes
    /// not sent early, or all of them if the server rejects early data, are written right
    /// behind the handshake: in TLS 1.3 and TLS 1.2 resumption in the same Next::write() as the
    /// client's Finished, its last flight (in a full TLS 1.2 handshake the server's Finished
    /// comes last). On success every byte of `first_data` has been delivered exactly
    /// once. Errors: the engine's (verification failures say why, see tls::verify_category()),
    /// or the next layer's; asio::error::eof if the peer closes during the handshake.
    asio::awaitable<error_code> handshake_client(std::span<const std::uint8_t> first_data) {
        return handshake_client(first_data, [] { return std::span<const std::uint8_t>{}; });
    }

    /// The same, and then the bytes `more()` returns (a std::span<const std::uint8_t>, kept
    /// alive by the caller until this completes). `more()` is called at most once: only when
    /// the handshake succeeded and the rest of `first_data` is encrypted. The client's last
    /// flight (its Finished, in TLS 1.3 and TLS 1.2 resumption), the rest of `first_data` and
    /// those bytes go out together, in one Next::write() unless they outgrow the engine's
    /// output buffer: the server reads them with its handshake's last read, and wakes once
    /// for them. A client passes what the app has already sent, without waiting; with nothing
    /// from `first_data` or `more()`, the Finished goes alone.
    template <class More>
    asio::awaitable<error_code> handshake_client(std::span<const std::uint8_t> first_data,
                                                 More more);

    /// Server handshake. Without early data, or with early data rejected, it completes the
    /// whole handshake. When the client's early data is accepted it completes as soon as the
    /// server's flight is sent, one round trip before the client's Finished (server-side
    /// 0-RTT): read_some() then returns the early data (replayable, see TLS 1.3 §8) and goes on
    /// to complete the handshake, where a bad Finished is an error like a bad record; write()
    /// sends 0.5-RTT data; shutdown_send() sends close_notify once the handshake is complete.
    /// Errors as for handshake_client().
    asio::awaitable<error_code> handshake_server() {
        return handshake_server([] {});
    }

    /// The same, calling `on_flight()` once, as soon as the server's flight is out and the
    /// handshake waits for the client's next one (its Finished; in a full TLS 1.2 handshake its
    /// key exchange too): the ClientHello has been accepted (version, SNI, ALPN chosen) and the
    /// client's answer is a round trip away. With early data accepted that is just before this
    /// completes. A server starts there what would otherwise wait for the handshake's end
    /// (kaminaris dials its target). Not called when the handshake ends or fails before.
    template <class OnFlight>
    asio::awaitable<error_code> handshake_server(OnFlight on_flight);

    /// Reads and decrypts at least one byte into `buf` (non-empty). Returns asio::error::eof at
    /// the end of the peer's stream (see above), an engine error for a bad record, or the next
    /// layer's error.
    asio::awaitable<io_result> read_some(std::span<std::uint8_t> buf);

    /// Completes when read_some() can make progress: at once when early data, decrypted bytes
    /// or unprocessed records are buffered (or the stream has ended), otherwise when the next
    /// layer is readable. Lets the relay hold no buffer while the connection is idle: the
    /// engine's drained buffers are freed too (the reader calls this, so no read into them
    /// is pending).
    asio::awaitable<error_code> wait_readable() requires requires(Next& n) { n.wait_readable(); }
    {
        if (early_pos_ < early_.size() || read_eof_ || deferred_ec_ ||
            engine_.has_buffered_input()) {
            co_return error_code{};
        }
        engine_.release_idle_buffers();
        co_return co_await next_.wait_readable();
    }

    /// Encrypts and sends all of `head` then all of `body`; neither is modified. Records are
    /// at most 16 KiB and several go out in one Next::write(). On success n == head.size() +
    /// body.size(). After shutdown_send() it fails with asio::error::shut_down.
    asio::awaitable<io_result> write(std::span<const std::uint8_t> head,
                                     std::span<std::uint8_t> body);

    /// Sends close_notify (not a next-layer half-close, see above). Reads keep working.
    /// Idempotent.
    asio::awaitable<error_code> shutdown_send();

    /// Closes the next layer; pending operations complete with an error.
    void close() noexcept;

private:
    asio::awaitable<void> lock_write();
    void unlock_write() noexcept;
    void cancel_wake() noexcept;
    void discard_output() noexcept;
    asio::awaitable<error_code> flush_locked();
    asio::awaitable<error_code> encrypt_locked(std::span<const std::uint8_t> data,
                                               std::size_t& total);
    asio::awaitable<error_code> write_locked(std::span<const std::uint8_t> data);
    asio::awaitable<error_code> fill();
    template <class Op>
    asio::awaitable<error_code> drive(Op op, bool flush_when_done = true);
    tls::engine::want decrypt(std::span<std::uint8_t> buf, error_code& ec, std::size_t& n);
    asio::awaitable<void> flush_from_reader();

    Next next_;
    tls::engine engine_;
    asio::steady_timer wake_;         ///< cancelled to wake an operation waiting for the flag
    std::vector<std::uint8_t> early_; ///< early data read by handshake_server(), not yet read
    std::size_t early_pos_ = 0;
    bool early_reading_ = false;     ///< server: early data accepted, EndOfEarlyData not yet read
    bool shutdown_deferred_ = false; ///< close_notify waits for the handshake to complete
    bool writing_ = false;           ///< the write flag: someone is encrypting/flushing to next_
    bool waiting_ = false;           ///< someone waits on wake_ for the flag
    bool read_eof_ = false;          ///< the peer's stream has ended
    error_code deferred_ec_; ///< end of stream or error met while draining records; next read
    bool write_shut_ = false;
    error_code write_error_; ///< sticky: the next layer failed a write
};

} // namespace kaminari::net

#include <kaminari/net/impl/tls_stream.hpp>

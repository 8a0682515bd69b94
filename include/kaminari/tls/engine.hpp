#pragma once

// A TLS connection with no I/O: an SSL* whose BIO is a pair of in-memory byte queues. Plaintext
// goes in and out through the operations below; ciphertext is moved by the caller between the
// queues and the network (get_output/put_input, or the zero-copy output()/consume_output()
// and input_space()/commit_input()). This is the shape of asio's
// ssl/detail/engine.hpp, plus TLS 1.3 early data, which asio's ssl::stream cannot do.
//
// Every operation returns what the caller must do next:
// - want_input_and_retry: feed ciphertext from the peer (put_input), then call again;
// - want_output_and_retry: send the pending output (get_output), then call again;
// - want_output: send the pending output; the operation is complete;
// - want_nothing: the operation is complete.
// `ec` carries the failure: an OpenSSL error in Asio's ssl category, a verification failure in
// verify_category() (message says why), or asio::error::eof when the peer sent close_notify.
// Even on error the result may be want_output: send it (it is an alert), then give up.

#include <kaminari/net/buffer_pool.hpp>
#include <kaminari/tls/openssl_ptr.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace kaminari::tls {

namespace detail {

/// A byte queue in one buffer of fixed capacity, borrowed from the thread's buffer pool on
/// first use and given back when empty, so an idle connection holds no ciphertext buffer and
/// a busy one does not go to the allocator for every flight. Must be used and destroyed on
/// one thread (as connections are).
class byte_queue {
public:
    explicit byte_queue(std::size_t capacity) noexcept
        : capacity_(capacity) {}

    std::size_t size() const noexcept { return end_ - begin_; }
    bool allocated() const noexcept { return static_cast<bool>(buf_); }

    /// The queued bytes, contiguous.
    std::span<std::uint8_t> data() const noexcept { return {buf_.span().data() + begin_, size()}; }

    /// Free space after the queued bytes, allocating the buffer first if needed (empty if that
    /// fails, or when full). With `compact`, queued bytes are first moved to the front when
    /// the end is reached; without, data() views stay where they are until consumed.
    std::span<std::uint8_t> space(bool compact) noexcept;

    /// Appends `n` bytes written at the start of space().
    void commit(std::size_t n) noexcept { end_ += n; }

    /// Removes `n` bytes from the front; an emptied queue starts again at the front.
    void consume(std::size_t n) noexcept {
        begin_ += n;
        if (begin_ == end_) {
            begin_ = end_ = 0;
        }
    }

    /// Frees the buffer if nothing is queued.
    void release_if_empty() noexcept {
        if (begin_ == end_) {
            buf_.release();
        }
    }

private:
    net::buffer_lease buf_;
    std::size_t capacity_;
    std::size_t begin_ = 0;
    std::size_t end_ = 0;
};

/// The engine's BIO state: ciphertext from the peer (`in`) and to the peer (`out`).
struct bio_queues {
    explicit bio_queues(std::size_t capacity) noexcept
        : in(capacity)
        , out(capacity) {}
    byte_queue in;
    byte_queue out;
};

} // namespace detail

/// Which side of the handshake an engine plays.
enum class role { client, server };

/// One TLS connection over in-memory ciphertext queues.
///
/// Thread safety: none; all calls on one engine must come from one thread, one at a time
/// (they are synchronous, so a coroutine adapter may interleave a read and a write between
/// calls, see net::tls_stream).
class engine {
public:
    enum want {
        want_input_and_retry = -2,
        want_output_and_retry = -1,
        want_nothing = 0,
        want_output = 1,
    };

    /// Default capacity of each direction's ciphertext buffer: room for several full 16 KiB
    /// records, so bulk transfer moves several records per syscall. A buffer is allocated
    /// when ciphertext first needs it and freed once drained (see release_idle_buffers()).
    static constexpr std::size_t default_buffer_size = 64 * 1024;

    /// Creates an SSL from `ctx` (which must outlive the engine) in role `r`, with ciphertext
    /// buffers of `buffer_size` bytes per direction. Throws std::system_error if OpenSSL cannot
    /// allocate.
    engine(SSL_CTX* ctx, role r, std::size_t buffer_size = default_buffer_size);

    engine(engine&&) noexcept = default;
    engine& operator=(engine&&) noexcept = default;

    /// Frees the SSL. A connection that completed its handshake counts as cleanly closed even
    /// without close_notify, so its session stays resumable in both peers' caches (OpenSSL would
    /// otherwise drop it; TLS 1.1+ no longer requires that). Fatal alerts still drop it.
    ~engine();

    /// The SSL object, for settings before the handshake (SNI, session, verify params).
    SSL* native_handle() const noexcept { return ssl_.get(); }

    /// Runs the handshake (SSL_do_handshake) in the engine's role.
    want handshake(error_code& ec);

    /// Sends close_notify once (one SSL_shutdown call; does not wait for the peer's). Reads
    /// keep working afterwards; writes fail.
    want shutdown(error_code& ec);

    /// Encrypts up to one record of `data` (SSL_write_ex with partial writes enabled). `n` is
    /// the plaintext consumed; 0 with want_output_and_retry means "flush, then retry with the
    /// same bytes". A server that accepted early data may write before the client's Finished
    /// has arrived (0.5-RTT data, SSL_write_early_data): to a client not yet authenticated by
    /// its Finished, right behind the server's own Finished.
    want write(std::span<const std::uint8_t> data, error_code& ec, std::size_t& n);

    /// Decrypts into `data` (SSL_read_ex). `n` is the plaintext produced. close_notify from the
    /// peer gives asio::error::eof.
    want read(std::span<std::uint8_t> data, error_code& ec, std::size_t& n);

    /// Client, before the handshake: sends `data` as TLS 1.3 early data
    /// (SSL_write_early_data). Precondition: data.size() <= early_data_limit() and > 0.
    want write_early_data(std::span<const std::uint8_t> data, error_code& ec, std::size_t& n);

    /// Server, instead of handshake() until `finished`: advances the handshake and reads early
    /// data into `data` (SSL_read_early_data). When `finished` becomes true, all early data has
    /// been read (or none was sent or it was rejected); then call handshake() until it
    /// returns want_nothing or want_output.
    want read_early_data(std::span<std::uint8_t> data, error_code& ec, std::size_t& n,
                         bool& finished);

    /// Allows write_early_data() when the session set on the SSL permits it (client option
    /// `0rtt`). Off by default.
    void enable_early_data(bool on) noexcept { early_data_enabled_ = on; }

    /// Client: how many bytes write_early_data() may send now: 0 unless early data is enabled,
    /// the handshake has not started and the session set for resumption allows early data.
    std::size_t early_data_limit() const noexcept;

    /// After the handshake: whether the server accepted the early data sent (client) or
    /// received (server).
    bool early_data_accepted() const noexcept;

    /// Whether the handshake is complete (SSL_is_init_finished). A server that accepted early
    /// data reads and writes before it is.
    bool handshake_done() const noexcept;

    /// After the handshake: whether the session was resumed.
    bool session_reused() const noexcept;

    /// After the handshake: the ALPN protocol settled on; empty when none was.
    std::string_view alpn() const noexcept;

    /// Bytes of ciphertext waiting to be sent to the peer.
    std::size_t pending_output() const noexcept;

    /// True when a read may make progress without more ciphertext from the peer: decrypted
    /// bytes or unprocessed records are buffered in OpenSSL or in the input queue.
    bool has_buffered_input() const noexcept;

    /// Copies up to buf.size() bytes of pending ciphertext into `buf` and removes them.
    std::size_t get_output(std::span<std::uint8_t> buf) noexcept;

    /// Copies ciphertext from the peer into the engine; returns how many bytes fitted.
    std::size_t put_input(std::span<const std::uint8_t> buf) noexcept;

    /// Zero-copy output: a contiguous view of all pending ciphertext. Valid until
    /// consume_output(); appending output (any operation) does not move it.
    std::span<const std::uint8_t> output() const noexcept;

    /// Removes the first `n` bytes of output() (n <= output().size()). Frees the output
    /// buffer when that empties it.
    void consume_output(std::size_t n) noexcept;

    /// Zero-copy input: contiguous free space for ciphertext from the peer (allocating the
    /// input buffer if needed; empty only if that fails or the buffer is full). After writing
    /// `n` bytes there, call commit_input(n). Valid until the next input_space(), put_input()
    /// or release_idle_buffers(); a later call may move the queued bytes (and so the space) to the
    /// front of the buffer.
    std::span<std::uint8_t> input_space() noexcept;

    /// Makes `n` bytes written at the start of input_space() visible to OpenSSL.
    void commit_input(std::size_t n) noexcept;

    /// Frees the input buffer if OpenSSL has read everything in it, and OpenSSL's record
    /// buffers if no record is partly read or written. Call when no view from input_space() is
    /// in use, e.g. before waiting for the peer, so an idle connection holds none.
    void release_idle_buffers() noexcept;

    /// Whether a ciphertext buffer is allocated (for tests).
    bool holds_buffers() const noexcept;

private:
    template <class Op>
    want perform(Op&& op, error_code& ec);

    ssl_ptr ssl_;
    detail::bio_queues* queues_ = nullptr; ///< owned by the SSL's BIO, freed with it
    bool early_data_enabled_ = false;
};

} // namespace kaminari::tls

#pragma once

// One Mux.Cool connection (codec/mux_cool.hpp) over a link, either side: the reader that
// parses the peer's frames, and for each session the two ways between the link and the
// session's own TCP stream (its target on kaminaris, its app on kaminaric). The link is any
// byte_stream that carries Mux.Cool's bytes: a websocket (ws, wss) or a TLS connection (tls);
// "the websocket" below stands for either.
//
// Sessions: kaminaris opens one for each New from the client (its destination is ignored, as
// v2ray-plugin's server does: every session goes to the remote); kaminaric opens them itself
// (open_session()) and sends the New. Keep data goes to its session's stream; End ends the
// peer's side, and the stream gets end of stream once what was queued is written
// (half-close); the stream's end of stream is sent as End, a failure (connect, read, write) as
// End with the error bit; a session ends when both sides have. End with the error bit, or a
// second End (v2ray's client answers our data for a session it has dropped with End), closes
// the session's stream at once. Keep data for an unknown session is answered with End and
// dropped; KeepAlive is ignored. UDP sessions are refused (End with error). A frame that is
// not valid Mux.Cool (or a New from a server) ends the whole connection, as in v2ray.
//
// Memory: at most mux_max_sessions sessions at once per connection (more are refused with End
// and error, and a log line); bytes from the peer wait in a session's queue until its stream
// takes them, at most mux_session_queue_limit per session and mux_connection_queue_limit per
// connection. Mux.Cool has no flow control: when a queue is full the websocket is not read
// until it drains, so one slow stream holds up the other sessions of its connection (v2ray
// does the same, with 512 KiB per session). Each read from a stream borrows one mux_buffer_size
// buffer for its read and its frame. One coroutine writes to the websocket at a time; frames
// sent meanwhile are copied to the connection's outbox (so their buffers go back at once), and
// a writer of their own writes them all in one go. A session's way down waits while the outbox
// holds mux_outbox_limit or more. The reader never waits for the way out: its answers go to the
// outbox (or start a writer), so two peers that both stop reading cannot hold each other up.

#include <kaminari/cli.hpp>
#include <kaminari/codec/mux_cool.hpp>
#include <kaminari/net/buffer_pool.hpp>
#include <kaminari/net/stream.hpp>
#include <kaminari/net/ws_stream.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

namespace kaminari::net {

/// Sessions open at once on one Mux.Cool connection; a New beyond it is refused.
inline constexpr std::size_t mux_max_sessions = 128;

/// Bytes from the client queued for one session's target before the websocket stops being
/// read (v2ray: 512 KiB on amd64).
inline constexpr std::size_t mux_session_queue_limit = 256 * 1024;

/// Bytes queued for all the targets of one connection before the websocket stops being read.
inline constexpr std::size_t mux_connection_queue_limit = 1024 * 1024;

/// Frames waiting for the websocket while another is being written: a session's way down that
/// finds this many waits for the writer to take them before it reads its target again.
inline constexpr std::size_t mux_outbox_limit = 256 * 1024;

/// The reader's answers (End for a session it cannot take) never wait for the websocket; a
/// client that keeps sending while it reads none of them past this is dropped.
inline constexpr std::size_t mux_outbox_hard_limit = 1024 * 1024;

/// The buffer a read from the websocket or from a target borrows (a frame carries at most
/// 64 KiB - 8 bytes of a target's data).
inline constexpr std::size_t mux_buffer_size = 64 * 1024;

namespace detail {

// One session: its target and the client's bytes waiting for it.
struct mux_session {
    mux_session(const asio::any_io_executor& exec, std::uint16_t session_id)
        : id(session_id)
        , wake(exec, asio::steady_timer::time_point::max())
        , done(exec, asio::steady_timer::time_point::max()) {}

    std::uint16_t id;
    std::optional<tcp_stream> target;
    std::vector<std::uint8_t> queue; // from the client, not yet taken by the writer
    std::size_t queued = 0;          // queue plus bytes being written to the target
    asio::steady_timer wake;         // the way up waits on it for bytes or End
    asio::steady_timer done;         // cancelled when both ways are done
    std::uint64_t up = 0;            // bytes written to the target
    std::uint64_t down = 0;          // bytes read from the target
    bool client_ended = false;       // End came from the client
    bool aborted = false;            // closed at once (End with error, a second End, the end)
    bool failed = false;             // connect, read or write failed on the target
    bool down_started = false;
    bool up_done = false;
    bool down_done = false;

    // Whether bytes from the client still go to the target.
    bool accepting() const noexcept { return !client_ended && !aborted && !failed && !up_done; }
};

// What the coroutines of one connection share. Held by shared_ptr from each, so it outlives
// all of them whatever order they are destroyed in (the io_context's destruction included).
struct mux_state {
    explicit mux_state(const asio::any_io_executor& exec)
        : flushed(exec, asio::steady_timer::time_point::max())
        , reader_wake(exec, asio::steady_timer::time_point::max())
        , all_done(exec, asio::steady_timer::time_point::max())
        , changed(exec, asio::steady_timer::time_point::max()) {}

    // `n` of the session's queued bytes have left its queue: written to the target when
    // `delivered`, else dropped.
    void written(mux_session& s, std::size_t n, bool delivered) noexcept;
    // Drops what the session has queued (not what is being written).
    void discard(mux_session& s) noexcept;
    // Closes the session's target at once and wakes its way up.
    void abort(mux_session& s) noexcept;
    // Aborts every session (the connection is ending).
    void abort_all() noexcept;

    std::unordered_map<std::uint16_t, std::shared_ptr<mux_session>> sessions;
    // The way out: one coroutine writes at a time (`writing`); frames sent meanwhile wait in
    // `outbox`, in order, and a writer of their own then writes them all in one go, so
    // sessions active together share writes (and segments, and the peer's wake-ups).
    std::vector<std::uint8_t> outbox;
    bool writing = false;
    asio::steady_timer flushed; // cancelled when the writer takes the outbox, or stops
    std::size_t flush_waiters = 0;
    asio::steady_timer reader_wake; // the reader waits on it for queue room
    asio::steady_timer all_done;    // the connection waits on it for its sessions to finish
    asio::steady_timer changed;     // cancelled when a session opens or closes, or at the end
    std::size_t queued = 0;         // sum of the sessions' `queued`
    std::size_t running = 0;        // session (and outbox writer) coroutines not yet finished
    std::uint64_t opened = 0;
    std::uint64_t refused = 0;
    std::uint64_t up = 0;
    std::uint64_t down = 0;
    bool ended = false;   // nothing more is written to the websocket
    bool closing = false; // shutdown() is closing it: sessions neither open nor send
};

// Where a session without a stream of its own connects (kaminaris: the remote).
struct mux_dial {
    endpoint remote;
    std::chrono::milliseconds timeout{10'000};
};

// One Mux.Cool connection: the reader (this object's run()) and the sessions it spawns, which
// all finish before run() returns, so they may refer to this object and to `link_`.
template <byte_stream Link>
class mux_connection {
public:
    /// kaminaris: sessions come from the client's New frames; the first gets `first` (the
    /// target dialed before detection), the others dial `dial`.
    mux_connection(Link& link, std::optional<tcp_stream> first, std::uint64_t id, mux_dial dial)
        : link_(link)
        , first_(std::move(first))
        , id_(id)
        , dial_(std::move(dial))
        , st_(std::make_shared<mux_state>(link.get_executor())) {}

    /// kaminaric: sessions are opened with open_session(); a New from the server is an error.
    mux_connection(Link& link, std::uint64_t id)
        : link_(link)
        , id_(id)
        , client_(true)
        , st_(std::make_shared<mux_state>(link.get_executor())) {}

    /// Parses the stream, `buf[0, have)` first, until it ends or fails; then ends every
    /// session and the websocket.
    asio::awaitable<void> run(buffer_lease buf, std::size_t have);

    /// kaminaric: session `sid` for `app`: sends its New and starts its two ways; wait on the
    /// session's `done` for both to end. Null when the connection has ended (`app` closed).
    asio::awaitable<std::shared_ptr<mux_session>> open_session(std::uint16_t sid, tcp_stream app);

    /// Sessions open now, and ever.
    std::size_t sessions() const noexcept { return st_->sessions.size(); }
    std::uint64_t opened() const noexcept { return st_->opened; }
    bool ended() const noexcept { return st_->ended; }
    /// Completes when a session opens or closes, or the connection ends.
    asio::awaitable<void> changed();

    /// Ends the connection cleanly: a close to the peer (websocket close, or TLS close_notify
    /// and end of stream), whose answer ends run().
    asio::awaitable<void> shutdown();

private:
    asio::awaitable<bool> on_frame(const codec::mux::frame_meta& m);
    asio::awaitable<void> deliver(std::span<const std::uint8_t> data);
    asio::awaitable<error_code> write_locked(std::span<std::uint8_t> frame);
    asio::awaitable<error_code> send(std::span<std::uint8_t> frame);
    asio::awaitable<error_code> flush_outbox();
    void start_flusher();
    void writer_done() noexcept;
    void fail() noexcept;
    void wake_flushed() noexcept;
    asio::awaitable<void> outbox_room();
    bool post(std::span<const std::uint8_t> frame);
    bool post_end(std::uint16_t sid, bool failed);
    asio::awaitable<bool> send_end(std::uint16_t sid, bool failed);
    std::shared_ptr<mux_session> open(std::uint16_t sid);
    asio::awaitable<void> up(std::shared_ptr<mux_session> s);
    asio::awaitable<void> down(std::shared_ptr<mux_session> s);
    asio::awaitable<bool> down_step(mux_session& s, error_code wait_ec);
    void spawn(std::shared_ptr<mux_session> s, bool is_up);
    void finished(mux_session& s, bool is_up, std::exception_ptr e) noexcept;

    Link& link_;
    std::optional<tcp_stream> first_; // the target dialed before detection: the first session's
    std::uint64_t id_;
    mux_dial dial_;
    bool client_ = false;
    std::shared_ptr<mux_state> st_;
    codec::mux::parser parser_;
    std::shared_ptr<mux_session> current_; // gets the current frame's data; null: dropped
    bool udp_logged_ = false;
};

} // namespace detail
} // namespace kaminari::net

#include <kaminari/net/impl/mux_link.hpp>

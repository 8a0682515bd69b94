#pragma once

// kaminaris's side of Mux.Cool (codec/mux_cool.hpp): v2ray-plugin clients multiplex their
// connections as sessions over one websocket by default (`mux=1`). After the websocket
// handshake, the first bytes from the client tell a Mux.Cool connection (a well-formed New
// frame) from a plain stream; a Mux.Cool connection is then served here, each session with a
// TCP connection of its own to the configured remote.
//
// Sessions: New opens one (its destination is ignored, as v2ray-plugin's server does: every
// session goes to the remote); Keep data goes to its session's target; End ends the client's
// side, and the target gets end of stream once what was queued is written (half-close); the
// target's end of stream is sent as End, a failure (connect, read, write) as End with the
// error bit; a session ends when both sides have. End with the error bit, or a second End
// (v2ray's client answers our data for a session it has dropped with End), closes the
// session's target at once. Keep data for an unknown session is answered with End and
// dropped; KeepAlive is ignored. UDP sessions are refused (End with error). A frame that is
// not valid Mux.Cool ends the whole connection, as in v2ray.
//
// Memory: at most mux_max_sessions sessions at once per connection (more are refused with End
// and error, and a log line); bytes from the client wait in a session's queue until its
// target takes them, at most mux_session_queue_limit per session and
// mux_connection_queue_limit per connection. Mux.Cool has no flow control: when a queue is
// full the websocket is not read until it drains, so one slow target holds up the other
// sessions of its connection (v2ray does the same, with 512 KiB per session). Reads from the
// targets take turns writing to the websocket (one writer, first come first served), each
// with one mux_buffer_size buffer borrowed only for its read and write, so the connection's
// way down holds one buffer at a time. `idle_timeout` and `ping` do not apply to Mux.Cool
// connections.

#include <kaminari/codec/mux_cool.hpp>
#include <kaminari/net/buffer_pool.hpp>
#include <kaminari/net/stream.hpp>
#include <kaminari/net/tunnel.hpp>
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

/// The buffer a read from the websocket or from a target borrows (a frame carries at most
/// 64 KiB - 8 bytes of a target's data).
inline constexpr std::size_t mux_buffer_size = 64 * 1024;

/// How long a client that is not kaminaric may stay silent after the target has spoken first
/// before its stream is taken as plain (a v2ray client sends its New within about 100 ms).
inline constexpr std::chrono::milliseconds mux_detect_grace{1000};

/// What serve_if_mux() did.
struct mux_outcome {
    bool handled = false;      ///< the connection is over (served as Mux.Cool, or failed)
    std::size_t forwarded = 0; ///< not handled: bytes of the client's already written to target
};

/// Runs after the websocket server handshake on `ws`, with `target` connected to the remote.
/// With `cfg.opts.mux` off, returns at once (not handled). Otherwise waits for the client's
/// first bytes and asks codec::mux::detect(): a New frame makes it a Mux.Cool connection,
/// served here until it ends (`target` becomes its first session's connection; handled).
/// Anything else is a plain stream: the bytes read are written to `target` and the caller
/// relays as usual (not handled). A client that sends nothing is plain once the target has
/// spoken and the client stayed silent for mux_detect_grace more (0 for kaminaric, which
/// announces itself with Kaminari-Half-Close), or after `idle_timeout` when one is set; but a
/// client that sent only End frames by then is Mux.Cool (codec::mux::only_leading_ends()),
/// and its sessions dial targets of their own. An end of stream before any byte is plain too
/// (the relay sees it again). Errors are logged
/// and close both streams (handled). `ws`, `target` and `cfg` must outlive the call.
template <byte_stream Lower>
asio::awaitable<mux_outcome> serve_if_mux(ws_stream<Lower>& ws, tcp_stream& target,
                                          std::uint64_t id, const server_config& cfg);

namespace detail {

// One writer at a time on the websocket, first come first served.
class mux_gate {
public:
    explicit mux_gate(asio::any_io_executor exec)
        : exec_(std::move(exec)) {}

    // Completes holding the gate (true); false only if the wait was cancelled from outside.
    asio::awaitable<bool> acquire();

    // Hands the gate to the longest waiter, or frees it.
    void release() noexcept;

private:
    struct waiter {
        explicit waiter(const asio::any_io_executor& exec)
            : timer(exec, asio::steady_timer::time_point::max()) {}
        asio::steady_timer timer; // cancelled by release() to wake the waiter
        bool granted = false;
    };
    asio::any_io_executor exec_;
    std::deque<std::shared_ptr<waiter>> waiters_;
    bool busy_ = false;
};

// One session: its target and the client's bytes waiting for it.
struct mux_session {
    mux_session(const asio::any_io_executor& exec, std::uint16_t session_id)
        : id(session_id)
        , wake(exec, asio::steady_timer::time_point::max()) {}

    std::uint16_t id;
    std::optional<tcp_stream> target;
    std::vector<std::uint8_t> queue; // from the client, not yet taken by the writer
    std::size_t queued = 0;          // queue plus bytes being written to the target
    asio::steady_timer wake;         // the way up waits on it for bytes or End
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
        : gate(exec)
        , reader_wake(exec, asio::steady_timer::time_point::max())
        , all_done(exec, asio::steady_timer::time_point::max()) {}

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
    mux_gate gate;
    asio::steady_timer reader_wake; // the reader waits on it for queue room
    asio::steady_timer all_done;    // the connection waits on it for its sessions to finish
    std::size_t queued = 0;         // sum of the sessions' `queued`
    std::size_t running = 0;        // session coroutines not yet finished
    std::uint64_t opened = 0;
    std::uint64_t refused = 0;
    std::uint64_t up = 0;
    std::uint64_t down = 0;
    bool ended = false; // nothing more is written to the websocket
};

} // namespace detail
} // namespace kaminari::net

#include <kaminari/net/impl/mux_server.hpp>

#pragma once

// Definitions for mux_link.hpp: the connection's reader, and each session's two ways (up: its
// queue to its stream; down: its stream to Keep frames on the websocket).

#include <kaminari/log.hpp>
#include <kaminari/net/dial.hpp>
#include <kaminari/net/timeout.hpp>

#include <boost/asio/co_spawn.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <exception>
#include <span>
#include <string>
#include <utility>

namespace kaminari::net::detail {

template <byte_stream Link>
asio::awaitable<void> mux_connection<Link>::run(buffer_lease buf, std::size_t have) {
    error_code why; // how reading the websocket ended
    bool stop = false;
    for (;;) {
        std::span<const std::uint8_t> in = buf.span().first(have);
        while (!in.empty() && !stop && !st_->ended) {
            const auto step = parser_.feed(in);
            if (step.err != codec::mux::error::ok) {
                // Not Mux.Cool any more: v2ray drops the whole connection too.
                log::info("#{} Mux.Cool: {} (session {}); closing", id_,
                          codec::mux::to_string(step.err), parser_.meta().id);
                stop = true;
                break;
            }
            if (step.ev == codec::mux::event::frame) {
                stop = !co_await on_frame(parser_.meta());
            } else if (step.ev == codec::mux::event::data) {
                co_await deliver(in.first(step.consumed));
            }
            in = in.subspan(step.consumed);
        }
        if (stop || st_->ended) {
            break;
        }
        buf.release(); // an idle connection holds no buffer
        if (auto ec = co_await link_.wait_readable()) {
            why = ec;
            break;
        }
        buf = borrow_buffer(mux_buffer_size);
        auto [ec, n] = co_await link_.read_some(buf.span());
        if (ec) {
            why = ec;
            break;
        }
        have = n;
    }
    buf.release();
    current_.reset();
    // A close from the client at a frame boundary ends the connection cleanly; anything else
    // (a bad frame, a failed write, a reset, a frame cut short) closes it.
    const bool clean = !stop && !st_->ended && why == asio::error::eof && parser_.idle();
    st_->ended = true;
    st_->changed.cancel();
    st_->abort_all();
    if (!clean) {
        link_.close();
    }
    {
        // A session writing to a client that stopped reading would hold the end up.
        const deadline limit(link_.get_executor(), std::chrono::seconds(5),
                             [this] { link_.close(); });
        while (st_->running != 0) {
            st_->all_done.expires_at(asio::steady_timer::time_point::max());
            co_await st_->all_done.async_wait(use_tuple);
        }
    }
    if (clean) {
        (void)co_await link_.shutdown_send();
    }
    if (st_->refused != 0) {
        log::info("#{} Mux.Cool: refused {} sessions beyond {} open at once", id_, st_->refused,
                  mux_max_sessions);
    }
    if (log::enabled(log::level::debug)) {
        log::debug("#{} Mux.Cool closed: {} sessions, {} bytes up, {} bytes down{}", id_,
                   st_->opened, st_->up, st_->down,
                   why && why != asio::error::eof ? fmt::format("; {}", why.message())
                                                  : std::string());
    }
}

template <byte_stream Link>
asio::awaitable<std::shared_ptr<mux_session>> mux_connection<Link>::open_session(std::uint16_t sid,
                                                                                 tcp_stream app) {
    if (st_->ended || st_->sessions.contains(sid)) {
        app.close();
        co_return nullptr;
    }
    // Registered (and counted as running, so the connection cannot end and this object go)
    // before anything suspends: kaminaric's count of a link's sessions holds while this waits
    // for room in the outbox (see down()) and while its New is queued. The server's answer may
    // follow the New at once.
    auto s = std::make_shared<mux_session>(link_.get_executor(), sid);
    s->target.emplace(std::move(app));
    ++st_->running;
    error_code ec;
    try {
        st_->sessions.emplace(sid, s);
        ++st_->opened;
        st_->changed.cancel();
        co_await outbox_room();
        if (st_->ended || st_->closing || s->aborted) {
            s->target->close();
            finished(*s, true, nullptr); // as if its way up had run
            co_return nullptr;
        }
        // The app's first bytes, when they are there already (most apps speak as soon as they
        // are connected), ride in the New (as v2ray's client does): one frame and one write,
        // and the server has them when its dial completes. Anything else (none yet, end of
        // stream, an error) is for the way down to find.
        constexpr std::size_t room = codec::mux::max_new_head_size;
        buffer_lease buf = borrow_buffer(mux_buffer_size);
        const auto body = buf.span().subspan(
            room, std::min(buf.span().size() - room, codec::mux::max_frame_payload));
        const io_result first = s->target->try_read_some(body);
        const std::size_t got = first.ec ? 0 : first.n;
        std::array<std::uint8_t, codec::mux::max_new_head_size> head{};
        // v2ray-plugin's client names 127.0.0.1:0 in every New; its server ignores it, as ours
        // does.
        static constexpr std::array<std::uint8_t, 4> nowhere{127, 0, 0, 1};
        const std::size_t n = codec::mux::encode_new_head(head, sid, codec::mux::network::tcp, 0,
                                                          codec::mux::address_type::ipv4, nowhere,
                                                          static_cast<std::uint16_t>(got));
        std::copy_n(head.begin(), n, buf.span().begin() + static_cast<std::ptrdiff_t>(room - n));
        const auto frame = buf.span().subspan(room - n, n + got);
        s->down += got;
        st_->down += got;
        if (log::enabled(log::level::debug)) {
            log::debug("#{} Mux.Cool session {} opened{}", id_, sid,
                       got != 0 ? fmt::format(" with {} bytes", got) : std::string());
        }
        // The New goes out before any Keep of this session: its way down starts after it.
        ec = co_await send(frame);
    } catch (...) {
        finished(*s, true, nullptr);
        throw;
    }
    if (ec || st_->ended) {
        // The connection failed or ended meanwhile: as if its way up had run.
        finished(*s, true, nullptr);
        co_return nullptr;
    }
    --st_->running; // spawn() counts it again, with nothing in between
    spawn(s, true);
    co_return s;
}

template <byte_stream Link>
asio::awaitable<void> mux_connection<Link>::changed() {
    if (st_->ended) {
        co_return;
    }
    st_->changed.expires_at(asio::steady_timer::time_point::max());
    co_await st_->changed.async_wait(use_tuple);
}

template <byte_stream Link>
asio::awaitable<void> mux_connection<Link>::shutdown() {
    // After what is being written and queued: the writer writes the outbox before it stops.
    while (st_->writing && !st_->ended) {
        ++st_->flush_waiters;
        co_await st_->flushed.async_wait(use_tuple);
        --st_->flush_waiters;
    }
    if (st_->ended || st_->closing) {
        co_return;
    }
    st_->closing = true; // nothing is queued behind the close, or sent after it
    st_->writing = true;
    try {
        if (auto ec = co_await link_.shutdown_send()) {
            log::debug("#{} Mux.Cool: closing: {}", id_, ec.message());
            link_.close();
        }
    } catch (...) {
        writer_done();
        throw;
    }
    writer_done();
}

template <byte_stream Link>
asio::awaitable<bool> mux_connection<Link>::on_frame(const codec::mux::frame_meta& m) {
    using codec::mux::status;
    current_.reset();
    const auto it = st_->sessions.find(m.id);
    switch (m.st) {
    case status::new_session:
        if (client_) {
            // Servers never open sessions (v2ray's client drops the connection too).
            log::info("#{} Mux.Cool: New from the server (session {}); closing", id_, m.id);
            co_return false;
        }
        if (it != st_->sessions.end()) {
            // v2ray's clients never reuse a live id; two sessions cannot share one.
            log::info("#{} Mux.Cool: New for session {}, which is open; closing", id_, m.id);
            co_return false;
        }
        if (m.net != codec::mux::network::tcp) {
            if (!udp_logged_) {
                udp_logged_ = true;
                log::info("#{} Mux.Cool: refusing UDP session {}: only TCP is relayed", id_, m.id);
            }
            co_return post_end(m.id, true);
        }
        if (st_->sessions.size() >= mux_max_sessions) {
            if (st_->refused++ == 0) {
                log::warn("#{} Mux.Cool: {} sessions open; refusing session {} and any more "
                          "until some end",
                          id_, st_->sessions.size(), m.id);
            }
            co_return post_end(m.id, true);
        }
        current_ = open(m.id);
        co_return true;
    case status::keep:
        if (it == st_->sessions.end()) {
            // v2ray: "notify remote peer to close this session", and drop the data.
            co_return !m.has_data() || post_end(m.id, false);
        }
        current_ = it->second;
        co_return true;
    case status::end:
        if (it != st_->sessions.end()) {
            auto& s = *it->second;
            if (m.has_error() || s.client_ended) {
                // An error, or the client answering our data for a session it has dropped.
                st_->abort(s);
            } else {
                s.client_ended = true;
                s.wake.cancel();
            }
        }
        co_return true;
    case status::keep_alive:
        co_return true;
    }
    co_return true;
}

template <byte_stream Link>
asio::awaitable<void> mux_connection<Link>::deliver(std::span<const std::uint8_t> data) {
    const auto s = current_;
    if (!s) {
        co_return;
    }
    // No flow control in Mux.Cool: while this session's queue (or the connection's) is full,
    // the websocket is not read, whatever the other sessions are doing.
    while (s->accepting() && !st_->ended &&
           (s->queued >= mux_session_queue_limit || st_->queued >= mux_connection_queue_limit)) {
        st_->reader_wake.expires_at(asio::steady_timer::time_point::max());
        co_await st_->reader_wake.async_wait(use_tuple);
    }
    if (!s->accepting() || st_->ended) {
        co_return;
    }
    s->queue.insert(s->queue.end(), data.begin(), data.end());
    s->queued += data.size();
    st_->queued += data.size();
    s->wake.cancel();
}

template <byte_stream Link>
asio::awaitable<error_code> mux_connection<Link>::write_locked(std::span<std::uint8_t> frame) {
    if (st_->ended) {
        co_return asio::error::operation_aborted;
    }
    auto [ec, n] = co_await link_.write(std::span<const std::uint8_t>{}, frame);
    if (ec && !st_->ended) {
        log::debug("#{} Mux.Cool: writing to the client failed: {}", id_, ec.message());
        fail();
    }
    co_return ec;
}

// Nothing more is written; the reader's read fails (or its wait for queue room ends), and the
// connection ends.
template <byte_stream Link>
void mux_connection<Link>::fail() noexcept {
    st_->ended = true;
    link_.close();
    st_->reader_wake.cancel();
    wake_flushed();
}

template <byte_stream Link>
asio::awaitable<error_code> mux_connection<Link>::send(std::span<std::uint8_t> frame) {
    if (st_->ended || st_->closing) {
        co_return asio::error::operation_aborted;
    }
    if (st_->writing) {
        // The writer writes it, after what came before it; a failure ends the connection.
        st_->outbox.insert(st_->outbox.end(), frame.begin(), frame.end());
        co_return error_code{};
    }
    st_->writing = true;
    error_code ec;
    try {
        ec = co_await write_locked(frame);
    } catch (...) {
        writer_done();
        throw;
    }
    if (!ec && !st_->ended && !st_->outbox.empty()) {
        // What others queued meanwhile goes with a writer of its own: this session goes back
        // to its own stream rather than write for the others as long as they keep sending.
        start_flusher();
        co_return ec;
    }
    writer_done();
    co_return ec;
}

// Writes the outbox, and what is queued meanwhile, until it stays empty.
template <byte_stream Link>
asio::awaitable<error_code> mux_connection<Link>::flush_outbox() {
    std::vector<std::uint8_t> batch;
    while (!st_->outbox.empty()) {
        batch.clear();
        batch.swap(st_->outbox);
        wake_flushed(); // room in the outbox again
        if (auto ec = co_await write_locked(batch)) {
            co_return ec;
        }
    }
    co_return error_code{};
}

template <byte_stream Link>
void mux_connection<Link>::writer_done() noexcept {
    st_->writing = false;
    // Nobody writes them now: only a failed (ended) connection leaves frames behind.
    std::vector<std::uint8_t>().swap(st_->outbox);
    wake_flushed();
}

template <byte_stream Link>
void mux_connection<Link>::wake_flushed() noexcept {
    if (st_->flush_waiters != 0) {
        st_->flushed.cancel();
    }
}

// A way down waits here, with no buffer, while the outbox is full.
template <byte_stream Link>
asio::awaitable<void> mux_connection<Link>::outbox_room() {
    while (!st_->ended && st_->outbox.size() >= mux_outbox_limit) {
        ++st_->flush_waiters;
        co_await st_->flushed.async_wait(use_tuple);
        --st_->flush_waiters;
    }
}

// The reader's frames: queued, or written by a writer of their own, never waited for.
template <byte_stream Link>
bool mux_connection<Link>::post(std::span<const std::uint8_t> frame) {
    if (st_->ended) {
        return false;
    }
    if (st_->closing) {
        return true; // nothing goes after the close, and the connection is ending anyway
    }
    if (st_->outbox.size() + frame.size() > mux_outbox_hard_limit) {
        log::info("#{} Mux.Cool: {} bytes of answers wait for a client that reads none of them; "
                  "closing",
                  id_, st_->outbox.size());
        fail();
        return false;
    }
    st_->outbox.insert(st_->outbox.end(), frame.begin(), frame.end());
    if (!st_->writing) {
        st_->writing = true;
        start_flusher();
    }
    return true;
}

// A writer that writes the outbox until it stays empty; `writing` is set, and is its.
template <byte_stream Link>
void mux_connection<Link>::start_flusher() {
    ++st_->running; // run() waits for it, so this object outlives it
    asio::co_spawn(link_.get_executor(), flush_outbox(),
                   [this, st = st_](std::exception_ptr e, error_code) {
                       (void)st; // the state outlives the writer
                       if (e) {
                           log::error("#{} Mux.Cool: writing to the client failed", id_);
                           fail();
                       }
                       writer_done();
                       if (--st_->running == 0) {
                           st_->all_done.cancel();
                       }
                   });
}

template <byte_stream Link>
bool mux_connection<Link>::post_end(std::uint16_t sid, bool failed) {
    std::array<std::uint8_t, codec::mux::end_frame_size> frame{};
    codec::mux::encode_end(frame, sid, failed);
    return post(frame);
}

template <byte_stream Link>
asio::awaitable<bool> mux_connection<Link>::send_end(std::uint16_t sid, bool failed) {
    std::array<std::uint8_t, codec::mux::end_frame_size> frame{};
    codec::mux::encode_end(frame, sid, failed);
    co_return !co_await send(frame);
}

template <byte_stream Link>
std::shared_ptr<mux_session> mux_connection<Link>::open(std::uint16_t sid) {
    auto s = std::make_shared<mux_session>(link_.get_executor(), sid);
    if (first_) {
        s->target.emplace(std::move(*first_));
        first_.reset();
    }
    st_->sessions.emplace(sid, s);
    ++st_->opened;
    st_->changed.cancel();
    log::debug("#{} Mux.Cool session {} opened", id_, sid);
    spawn(s, true);
    return s;
}

template <byte_stream Link>
void mux_connection<Link>::spawn(std::shared_ptr<mux_session> s, bool is_up) {
    ++st_->running;
    asio::co_spawn(link_.get_executor(), is_up ? up(s) : down(s),
                   [this, st = st_, s, is_up](std::exception_ptr e) {
                       (void)st; // the state outlives every session's coroutines
                       finished(*s, is_up, e);
                   });
}

template <byte_stream Link>
void mux_connection<Link>::finished(mux_session& s, bool is_up, std::exception_ptr e) noexcept {
    if (e) {
        log::error("#{} Mux.Cool session {} ended by exception: {}", id_, s.id, log::what(e));
        s.failed = true;
        if (s.target) {
            s.target->close(); // the other way ends too
        }
        s.wake.cancel();
    }
    if (is_up) {
        s.up_done = true;
        if (!s.down_started) {
            s.down_done = true;
        }
        st_->discard(s);
    } else {
        s.down_done = true;
    }
    if (s.up_done && s.down_done) {
        if (auto it = st_->sessions.find(s.id);
            it != st_->sessions.end() && it->second.get() == &s) {
            st_->sessions.erase(it);
            st_->changed.cancel();
        }
        s.done.cancel();
        log::debug("#{} Mux.Cool session {} closed: {} bytes up, {} bytes down{}", id_, s.id, s.up,
                   s.down, s.failed ? "; failed" : (s.aborted ? "; aborted" : ""));
    }
    if (--st_->running == 0) {
        st_->all_done.cancel();
    }
    st_->reader_wake.cancel();
}

template <byte_stream Link>
asio::awaitable<void> mux_connection<Link>::up(std::shared_ptr<mux_session> s) {
    if (!s->target) {
        // Not cancelled when the session or connection ends meanwhile: the end waits for it
        // (at most connect_timeout).
        auto [ec, socket] = co_await connect_remote(dial_.remote, dial_.timeout);
        if (s->aborted || st_->ended) {
            co_return;
        }
        if (ec) {
            log::warn("#{} Mux.Cool session {}: connect to {} failed: {}", id_, s->id,
                      dial_.remote.to_string(), ec.message());
            s->failed = true;
            st_->discard(*s);
            (void)co_await send_end(s->id, true);
            co_return;
        }
        s->target.emplace(std::move(socket));
    }
    s->down_started = true;
    spawn(s, false);
    std::vector<std::uint8_t> out;
    for (;;) {
        if (s->aborted || s->failed || st_->ended) {
            co_return;
        }
        if (!s->queue.empty()) {
            out.swap(s->queue);
            const auto w = co_await write_all(*s->target, std::span(out));
            st_->written(*s, out.size(), !w.ec);
            out.clear();
            if (w.ec) {
                if (!s->aborted && !st_->ended) {
                    log::debug("#{} Mux.Cool session {}: target: {}", id_, s->id, w.ec.message());
                    s->failed = true;
                    st_->discard(*s);
                    s->target->close(); // the way down sends End with the error bit
                }
                co_return;
            }
            continue;
        }
        // Drained: an idle session holds no buffer.
        std::vector<std::uint8_t>().swap(out);
        std::vector<std::uint8_t>().swap(s->queue);
        if (s->client_ended) {
            // Half-close: the target reads end of stream; its reply keeps flowing down.
            (void)co_await s->target->shutdown_send();
            co_return;
        }
        s->wake.expires_at(asio::steady_timer::time_point::max());
        co_await s->wake.async_wait(use_tuple);
    }
}

template <byte_stream Link>
asio::awaitable<void> mux_connection<Link>::down(std::shared_ptr<mux_session> s) {
    for (;;) {
        // Wait without a buffer; take one for a read and its frame.
        auto [wec] =
            co_await s->target->socket().async_wait(asio::socket_base::wait_read, use_tuple);
        if (s->aborted || st_->ended) {
            co_return;
        }
        // No read while the outbox is full: with room, the read and its frame's place in the
        // outbox follow without a wait, so the outbox stays under its limit plus one frame.
        co_await outbox_room();
        if (!co_await down_step(*s, wec)) {
            co_return;
        }
    }
}

template <byte_stream Link>
asio::awaitable<bool> mux_connection<Link>::down_step(mux_session& s, error_code wait_ec) {
    if (s.aborted || st_->ended) {
        co_return false;
    }
    std::array<std::uint8_t, codec::mux::end_frame_size> end{};
    buffer_lease buf;
    io_result got{wait_ec, 0};
    if (!wait_ec && s.target) {
        buf = borrow_buffer(mux_buffer_size);
        const auto body = buf.span().subspan(
            codec::mux::keep_head_size, std::min(buf.span().size() - codec::mux::keep_head_size,
                                                 codec::mux::max_frame_payload));
        got = s.target->try_read_some(body);
        if (got.ec == asio::error::would_block || got.ec == asio::error::try_again) {
            co_return true;
        }
    }
    if (got.ec == asio::error::eof) {
        codec::mux::encode_end(end, s.id, false);
        (void)co_await send(end);
        co_return false;
    }
    if (got.ec) {
        if (!s.failed) {
            log::debug("#{} Mux.Cool session {}: target: {}", id_, s.id, got.ec.message());
            s.failed = true;
            st_->discard(s);
            s.target->close(); // the way up ends too
            s.wake.cancel();
        }
        codec::mux::encode_end(end, s.id, true);
        (void)co_await send(end);
        co_return false;
    }
    s.down += got.n;
    st_->down += got.n;
    const auto frame = buf.span().first(codec::mux::keep_head_size + got.n);
    codec::mux::encode_keep_head(frame.first<codec::mux::keep_head_size>(), s.id,
                                 static_cast<std::uint16_t>(got.n));
    co_return !co_await send(frame);
}

} // namespace kaminari::net::detail

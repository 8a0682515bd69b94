#pragma once

// Definitions for mux_server.hpp: detection.

#include <kaminari/log.hpp>
#include <kaminari/net/dial.hpp>
#include <kaminari/net/timeout.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/this_coro.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <exception>
#include <span>
#include <string>
#include <utility>
#include <variant>

namespace kaminari::net {
namespace detail {

inline asio::awaitable<void> mux_sleep(std::chrono::milliseconds d) {
    asio::steady_timer t(co_await asio::this_coro::executor, d);
    co_await t.async_wait(use_tuple);
}

// Detection's other branch: completes when waiting longer for the client's first bytes is
// pointless: `grace` after the target became readable (it spoke first, or closed), or after
// `idle` (when set) whatever the target does.
inline asio::awaitable<void> mux_give_up(tcp_stream& target, std::chrono::milliseconds grace,
                                         std::chrono::milliseconds idle, bool partial) {
    using namespace asio::experimental::awaitable_operators;
    if (partial) {
        // Part of a frame head came: a v2ray client writes a New head at once, so a client
        // that stops there is a plain one waiting for its answer (one byte of at most 2,
        // say): it is not held longer than the grace.
        co_await mux_sleep(grace);
        co_return;
    }
    // An error (the cancellation when the client's bytes came first) ends this at once.
    if (idle.count() > 0) {
        const auto r = co_await (target.wait_readable() || mux_sleep(idle));
        if (r.index() == 1 || std::get<0>(r)) {
            co_return;
        }
    } else {
        const error_code ec = co_await target.wait_readable();
        if (ec) {
            co_return;
        }
    }
    if (grace.count() > 0) {
        co_await mux_sleep(grace);
    }
}

inline mux_dial server_dial(const server_config& cfg) {
    return {cfg.remote, cfg.opts.common.connect_timeout};
}

} // namespace detail

template <byte_stream Link>
asio::awaitable<void> serve_mux(Link& link, std::uint64_t id, const server_config& cfg) {
    log::debug("#{} Mux.Cool connection (kaminaric)", id);
    detail::mux_connection<Link> conn(link, std::nullopt, id, detail::server_dial(cfg));
    co_await conn.run(buffer_lease{}, 0);
}

template <byte_stream Lower>
asio::awaitable<mux_outcome> serve_if_mux(ws_stream<Lower>& ws, tcp_stream& target,
                                          std::uint64_t id, const server_config& cfg) {
    using namespace asio::experimental::awaitable_operators;
    namespace mux = codec::mux;
    // kaminaric announces itself (Kaminari-Half-Close, so no close linger), and its Mux.Cool
    // websockets say so (Kaminari-Mux, served by serve_mux()): its other streams are plain,
    // with nothing to detect.
    if (!cfg.opts.mux || ws.close_linger().count() == 0) {
        co_return mux_outcome{};
    }
    const auto grace = mux_detect_grace;
    buffer_lease buf;
    std::size_t have = 0;
    auto verdict = mux::verdict::need_more;
    error_code rec;
    while (verdict == mux::verdict::need_more) {
        auto which =
            co_await (ws.wait_readable() ||
                      detail::mux_give_up(target, grace, cfg.opts.common.idle_timeout, have != 0));
        if (which.index() == 1) {
            // Plain, unless all that came is End frames: v2ray's client, whose first app
            // closed at once, holding the websocket for its next app. Its New may come long
            // after the target spoke, so that target is nobody's: its sessions dial their own.
            if (mux::only_leading_ends(buf.span().first(have))) {
                log::debug("#{} Mux.Cool connection (End frames only so far)", id);
                target.close();
                detail::mux_connection<ws_stream<Lower>> conn(ws, std::nullopt, id,
                                                              detail::server_dial(cfg));
                co_await conn.run(std::move(buf), have);
                co_return mux_outcome{true, 0};
            }
            break; // plain
        }
        if (auto ec = std::get<0>(which)) {
            rec = ec;
            break;
        }
        if (!buf) {
            buf = borrow_buffer(mux_buffer_size);
        }
        // detect() decides within 32 x 6 + 266 bytes, so the buffer never fills here.
        auto [ec, n] = co_await ws.read_some(buf.span().subspan(have));
        if (ec) {
            rec = ec;
            break;
        }
        have += n;
        verdict = mux::detect(buf.span().first(have));
    }
    if (verdict == mux::verdict::mux) {
        log::debug("#{} Mux.Cool connection", id);
        detail::mux_connection<ws_stream<Lower>> conn(
            ws, std::optional<tcp_stream>(std::move(target)), id, detail::server_dial(cfg));
        co_await conn.run(std::move(buf), have);
        co_return mux_outcome{true, 0};
    }
    if (rec && rec != asio::error::eof) {
        log::debug("#{} closed before its first bytes: {}", id, rec.message());
        ws.close();
        target.close();
        co_return mux_outcome{true, 0};
    }
    if (log::enabled(log::level::debug)) {
        log::debug("#{} plain stream ({} bytes read{}{})", id, have,
                   verdict == mux::verdict::plain ? ", not a New frame" : "",
                   rec ? ", then " + rec.message() : std::string());
    }
    // A plain stream: what was read goes to the target first, then the relay takes over (and
    // reads an end of stream met here again).
    if (have != 0) {
        if (auto w = co_await write_all(target, buf.span().first(have)); w.ec) {
            log::debug("#{} target: {}", id, w.ec.message());
            ws.close();
            target.close();
            co_return mux_outcome{true, 0};
        }
    }
    co_return mux_outcome{false, have};
}

} // namespace kaminari::net

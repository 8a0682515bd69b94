#pragma once

// kaminaric's side of Mux.Cool (`mux=<n>`, net/mux_link.hpp): app connections ride as sessions
// on shared websockets, as v2ray-plugin's client does, so kaminaric can replace it in front of
// a v2ray-plugin server with default settings, and an app connection on a websocket that is
// already open skips the connect and both handshakes.
//
// Per worker, a mux_links keeps the websockets it opened. An app connection goes to the first
// open one with fewer than n sessions that has not carried mux_sessions_per_link yet. When a
// burst has filled them all, it goes to the least busy open one with fewer than 2n (at most
// mux_burst_max, under kaminaris's limit) rather than wait for a new websocket, and one starts
// opening for the connections after it. Failing that, it waits for a websocket being opened
// (which counts the sessions waiting for it as open), or opens a new one that others may
// wait for too. A websocket that has carried mux_sessions_per_link sessions takes no
// more and closes once its last ends; one with no session for mux_link_idle closes (v2ray's
// client: 128 sessions, 16 s). A websocket that fails to open fails the app connections
// waiting for it; one that ends ends its sessions. With `tls;mux=<n>` the links are TLS
// connections that settled on ALPN codec::mux::tls_alpn instead of websockets; all the above
// holds for them.

#include <kaminari/log.hpp>
#include <kaminari/net/listener.hpp>
#include <kaminari/net/mux_link.hpp>
#include <kaminari/net/relay.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <vector>

namespace kaminari::net {

/// Sessions a websocket carries in its life before it is retired (v2ray: MaxConnection 128).
inline constexpr std::size_t mux_sessions_per_link = 128;

/// Most sessions a burst puts on one websocket beyond n (see mux_links::choose()).
inline constexpr std::size_t mux_burst_max = mux_max_sessions * 3 / 4;

/// A websocket with no session for this long is closed (v2ray's client: 16 s).
inline constexpr std::chrono::seconds mux_link_idle{16};

/// How long a websocket that kaminaric closed waits for the server's close before it is cut.
inline constexpr std::chrono::seconds mux_link_close_wait{10};

/// After a server declined Mux.Cool (tls: it did not select ALPN kaminari-mux), app
/// connections go without it for this long before the next one asks again.
inline constexpr std::chrono::seconds mux_declined_wait{60};

/// What mux_links::choose() sees of a websocket.
struct mux_link_view {
    bool open = false;        ///< open (else being opened)
    bool room = false;        ///< takes a session under n
    bool burst_room = false;  ///< takes a session under the burst limit
    std::size_t sessions = 0; ///< sessions open on it now
};

/// Where a session goes: links[index], or none (npos: open a new websocket and wait for it);
/// `open_ahead`: also start opening a websocket for the sessions after it.
struct mux_choice {
    static constexpr std::size_t none = static_cast<std::size_t>(-1);
    std::size_t index = none;
    bool open_ahead = false;
};

/// The choice (pure, so it is tested without sockets; `view(link)` gives a mux_link_view): the
/// first open websocket with room; else the least busy open one with burst room, and another
/// starts opening unless one being opened has room (a cold websocket costs a session the
/// connect and the handshakes, two or three round trips; an open one carries it at once, a
/// little over n for a while); else the first being opened with room; else none.
template <class Links, class View>
mux_choice choose_mux_link(const Links& links, View view) {
    std::size_t opening = mux_choice::none;
    std::size_t busy = mux_choice::none;
    std::size_t busy_sessions = 0;
    std::size_t i = 0;
    for (const auto& l : links) {
        const mux_link_view v = view(l);
        if (!v.open) {
            if (opening == mux_choice::none && v.room) {
                opening = i;
            }
        } else if (v.room) {
            return {i, false};
        } else if (v.burst_room && (busy == mux_choice::none || v.sessions < busy_sessions)) {
            busy = i;
            busy_sessions = v.sessions;
        }
        ++i;
    }
    if (busy == mux_choice::none) {
        return {opening, false};
    }
    return {busy, opening == mux_choice::none};
}

/// The websockets of one worker. Every call on that worker's thread.
template <byte_stream Link>
class mux_links : public std::enable_shared_from_this<mux_links<Link>> {
public:
    /// Opens a websocket to the server (connect, TLS, upgrade; failures logged with `id`).
    /// Sets `declined` (and returns nullopt) when the server said it does not take Mux.Cool.
    using opener =
        std::function<asio::awaitable<std::optional<Link>>(std::uint64_t, bool& declined)>;

    mux_links(asio::any_io_executor exec, std::size_t per_link, opener open)
        : exec_(std::move(exec))
        , per_link_(per_link)
        , open_(std::move(open)) {}

    /// Carries `app` (connection `id`) as a session until both sides end: its bytes each way
    /// (a_to_b: from the app), or nullopt when no websocket took it (logged). `app` is moved
    /// from only once a session has it: after nullopt it is still the caller's, to close, or
    /// to carry without Mux.Cool when declined().
    asio::awaitable<std::optional<relay_result>> carry(asio::ip::tcp::socket& app,
                                                       std::uint64_t id);

    /// Whether the server declined Mux.Cool less than mux_declined_wait ago: app connections
    /// should go without it meanwhile.
    bool declined() const noexcept {
        return declined_until_ > std::chrono::steady_clock::time_point{} &&
               std::chrono::steady_clock::now() < declined_until_;
    }

    /// Closes every websocket (kaminaric is stopping).
    void stop() noexcept {
        stopped_ = true;
        for (auto& l : links_) {
            if (l->stream) {
                l->stream->close();
            }
        }
    }

private:
    enum class state : std::uint8_t { opening, open, closed };

    struct link {
        explicit link(const asio::any_io_executor& exec, std::uint64_t link_id)
            : id(link_id)
            , ready(exec, asio::steady_timer::time_point::max()) {}
        std::uint64_t id; // for the log: the app connection that opened it, or its own (ahead)
        std::optional<Link> stream; // set while open
        std::optional<detail::mux_connection<Link>> conn;
        asio::steady_timer ready; // cancelled when it leaves `opening`
        state st = state::opening;
        std::size_t waiting = 0; // app connections waiting for it to open
        std::size_t taken = 0;   // sessions given out, ever
        bool retired = false;    // takes no new session

        bool has_room(std::size_t per_link) const noexcept {
            if (st == state::closed || retired || (conn && conn->ended()) ||
                taken + waiting >= mux_sessions_per_link) {
                return false;
            }
            const std::size_t open_now = conn ? conn->sessions() : 0;
            return open_now + waiting < per_link;
        }
    };

    // Sessions an open websocket takes while a burst outgrows the open ones (see choose()):
    // twice n, never fewer than n, and at most mux_burst_max, which leaves kaminaris (at most
    // mux_max_sessions on one connection) room for sessions that have ended here but not yet
    // there (their last bytes still going to the target).
    std::size_t burst_limit() const noexcept {
        return std::max(per_link_, std::min(2 * per_link_, mux_burst_max));
    }
    // Where app connection `id`'s session goes: the first open websocket with room; else the
    // least busy open one under burst_limit(), and a websocket starts opening for the sessions
    // after it unless one is already being opened with room; else one being opened with room.
    // Null: open a new one and wait for it.
    std::shared_ptr<link> choose(std::uint64_t id);
    // Opens `l` (its opener's part), then runs it detached.
    asio::awaitable<void> open_link(std::shared_ptr<link> l, std::uint64_t id);
    static asio::awaitable<void> open_ahead(std::shared_ptr<mux_links> self,
                                            std::shared_ptr<link> l) {
        const auto id = l->id;
        co_await self->open_link(std::move(l), id);
    }
    asio::awaitable<void> run_link(std::shared_ptr<link> l);
    static asio::awaitable<void> watch(std::shared_ptr<link> l);
    void forget(const std::shared_ptr<link>& l) noexcept {
        links_.erase(std::remove(links_.begin(), links_.end(), l), links_.end());
    }

    asio::any_io_executor exec_;
    std::size_t per_link_;
    opener open_;
    std::vector<std::shared_ptr<link>> links_;
    std::chrono::steady_clock::time_point declined_until_{};
    bool stopped_ = false;
};

template <byte_stream Link>
asio::awaitable<std::optional<relay_result>> mux_links<Link>::carry(asio::ip::tcp::socket& app,
                                                                    std::uint64_t id) {
    // Twice at most: a websocket that the server closed before this app's session opened on
    // it (a restart) gives way to another, once.
    for (int attempt = 0; attempt < 2; ++attempt) {
        std::shared_ptr<link> l = choose(id);
        if (!l) {
            l = std::make_shared<link>(exec_, id);
            links_.push_back(l);
            ++l->waiting;
            co_await open_link(l, id);
            --l->waiting;
            if (l->st != state::open) {
                co_return std::nullopt; // logged by the opener; `app` is still the caller's
            }
        } else if (l->st == state::opening) {
            ++l->waiting;
            while (l->st == state::opening) {
                co_await l->ready.async_wait(use_tuple);
            }
            --l->waiting;
            if (!l->conn) {
                co_return std::nullopt; // it failed to open (logged)
            }
        }
        if (!l->conn || l->conn->ended()) {
            log::debug("#{} its Mux.Cool connection #{} ended first", id, l->id);
            continue;
        }
        // Registered before open_session() can suspend, so the counts hold.
        const auto sid = static_cast<std::uint16_t>(++l->taken);
        if (l->taken >= mux_sessions_per_link) {
            l->retired = true;
        }
        log::debug("#{} as Mux.Cool session {} of #{}", id, sid, l->id);
        auto s = co_await l->conn->open_session(sid, tcp_stream(std::move(app)));
        if (!s) {
            co_return std::nullopt; // the connection ended meanwhile; the app is closed
        }
        while (!(s->up_done && s->down_done)) {
            s->done.expires_at(asio::steady_timer::time_point::max());
            co_await s->done.async_wait(use_tuple);
        }
        relay_result r;
        r.a_to_b.bytes = s->down; // read from the app
        r.b_to_a.bytes = s->up;   // written to the app
        if (s->failed) {
            r.b_to_a.ec = asio::error::connection_reset;
        } else if (s->aborted) {
            r.b_to_a.ec = asio::error::connection_aborted;
        }
        co_return r;
    }
    co_return std::nullopt;
}

template <byte_stream Link>
std::shared_ptr<typename mux_links<Link>::link> mux_links<Link>::choose(std::uint64_t id) {
    const std::size_t burst = burst_limit();
    const mux_choice c = choose_mux_link(links_, [&](const std::shared_ptr<link>& l) {
        const bool open = l->st == state::open;
        return mux_link_view{open, l->has_room(per_link_), l->has_room(burst),
                             open ? l->conn->sessions() : 0};
    });
    if (c.index == mux_choice::none) {
        return nullptr;
    }
    auto chosen = links_[c.index];
    if (c.open_ahead && !stopped_) {
        // A connection of kaminaric's own: its id is its own, so what becomes of it is not
        // logged against the app connection that happened to trigger it.
        auto ahead = std::make_shared<link>(exec_, new_connection_id());
        links_.push_back(ahead);
        log::debug("#{} Mux.Cool: every connection has {} sessions or more; #{} opens another", id,
                   per_link_, ahead->id);
        asio::co_spawn(exec_, open_ahead(this->shared_from_this(), std::move(ahead)),
                       asio::detached);
    }
    return chosen;
}

template <byte_stream Link>
asio::awaitable<void> mux_links<Link>::open_link(std::shared_ptr<link> l, std::uint64_t id) {
    try {
        bool declined = false;
        auto opened = co_await open_(id, declined);
        if (declined) {
            declined_until_ = std::chrono::steady_clock::now() + mux_declined_wait;
        }
        if (opened && !stopped_) {
            l->stream.emplace(std::move(*opened));
            l->conn.emplace(*l->stream, l->id);
        }
    } catch (const std::exception& e) {
        log::error("#{} Mux.Cool: opening a connection failed: {}", id, e.what());
    } catch (...) {
        log::error("#{} Mux.Cool: opening a connection failed", id);
    }
    if (!l->conn) {
        l->stream.reset();
        l->st = state::closed;
        forget(l);
        l->ready.cancel();
        co_return;
    }
    log::debug("#{} Mux.Cool connection open ({} sessions at most)", l->id, per_link_);
    l->st = state::open;
    l->ready.cancel();
    asio::co_spawn(exec_, run_link(l), [self = this->shared_from_this(), l](std::exception_ptr e) {
        if (e) {
            log::error("#{} Mux.Cool connection ended by an exception", l->id);
        }
        l->st = state::closed;
        self->forget(l);
    });
}

template <byte_stream Link>
asio::awaitable<void> mux_links<Link>::watch(std::shared_ptr<link> l) {
    using namespace asio::experimental::awaitable_operators;
    auto& conn = *l->conn;
    while (!conn.ended()) {
        if (conn.sessions() == 0 && l->waiting == 0) {
            if (l->retired) {
                break;
            }
            asio::steady_timer idle(co_await asio::this_coro::executor, mux_link_idle);
            const auto r = co_await (conn.changed() || idle.async_wait(use_tuple));
            if (r.index() == 1 && conn.sessions() == 0 && l->waiting == 0) {
                log::debug("#{} Mux.Cool connection idle for {} s; closing", l->id,
                           mux_link_idle.count());
                break;
            }
            continue;
        }
        co_await conn.changed();
    }
    l->retired = true;
    if (conn.ended()) {
        co_return;
    }
    co_await conn.shutdown();
    // The server answers the close, which ends run(); one that does not is cut.
    asio::steady_timer limit(co_await asio::this_coro::executor, mux_link_close_wait);
    while (!conn.ended()) {
        const auto r = co_await (conn.changed() || limit.async_wait(use_tuple));
        if (r.index() == 1 && !conn.ended()) {
            log::debug("#{} Mux.Cool: no close from the server within {} s", l->id,
                       mux_link_close_wait.count());
            l->stream->close();
            break;
        }
    }
}

template <byte_stream Link>
asio::awaitable<void> mux_links<Link>::run_link(std::shared_ptr<link> l) {
    using namespace asio::experimental::awaitable_operators;
    co_await (l->conn->run(buffer_lease{}, 0) && watch(l));
    l->st = state::closed;
    l->conn.reset();
    l->stream.reset();
}

} // namespace kaminari::net

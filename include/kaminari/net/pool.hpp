#pragma once

// Warm connections (`pool=<n>`, kaminaric): connections to the server opened ahead of the apps
// that will use them, so an app's connection skips the TCP handshake (and the TLS handshake,
// where there is one). One pool per worker, used only on that worker's thread: no locks.

#include <kaminari/log.hpp>
#include <kaminari/net/stream.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <sys/socket.h>
#include <vector>

namespace kaminari::net {

/// Whether a warm connection whose server may speak first (plain tcp and tls) keeps bytes that
/// came in while it waited, or is dropped when any arrive (ws and wss: a server says nothing
/// before the upgrade request, so bytes then mean a broken connection).
enum class early_bytes { keep, fatal };

/// A connection taken from the pool, with what the server sent while it waited.
template <class Conn>
struct warm_connection {
    Conn conn;
    std::vector<std::uint8_t> received; ///< to hand to the app before anything else
};

/// A claim on one of a pool's ready connections by an app connection on its way to the pool's
/// worker from another (warm_pool::claim()): other workers count one ready connection fewer
/// until it is released, at the take, or when it is destroyed (on any thread).
class ready_claim {
public:
    ready_claim() = default;
    explicit ready_claim(std::shared_ptr<std::atomic<std::size_t>> claims) noexcept
        : claims_(std::move(claims)) {}
    ready_claim(ready_claim&&) noexcept = default;
    ready_claim& operator=(ready_claim&& o) noexcept {
        if (this != &o) {
            release();
            claims_ = std::move(o.claims_);
        }
        return *this;
    }
    ready_claim(const ready_claim&) = delete;
    ready_claim& operator=(const ready_claim&) = delete;
    ~ready_claim() { release(); }

    explicit operator bool() const noexcept { return claims_ != nullptr; }

    void release() noexcept {
        if (claims_) {
            claims_->fetch_sub(1, std::memory_order_relaxed);
            claims_.reset();
        }
    }

private:
    std::shared_ptr<std::atomic<std::size_t>> claims_;
};

/// Up to `size` connections to the server, opened by `open` (which includes any TLS
/// handshake), kept idle until an app takes one. Each waiting connection is watched: one the
/// server closed or reset is dropped (and replaced) at once, never handed out; one older than
/// `max_age` is closed and replaced. A taken connection is replaced in the background, from
/// `refill_delay` after the take on (see fill_soon()). When
/// opening fails (the server is down), the pool retries after a back-off that doubles from
/// 0.5 s up to `max_age`, and take() finds it empty meanwhile: the caller dials as without a
/// pool.
///
/// A pool that may grow (`max_size` above `size`, `pool_max=`) follows bursts: when more
/// connections are taken within burst_window than it keeps (a page load: dozens at once), it
/// keeps that many ready from then on, up to `max_size`, so the next burst finds them warm. It
/// shrinks back to `size` once no burst has reached that many for `max_age` (the connections
/// opened for it expire unused and are not replaced).
///
/// Thread safety: every call on the worker's own thread (the executor given).
template <class Conn>
class warm_pool : public std::enable_shared_from_this<warm_pool<Conn>> {
public:
    using opener = std::function<asio::awaitable<std::optional<Conn>>()>;

    /// How long after a take the replacements start opening.
    static constexpr std::chrono::milliseconds refill_delay{5};

    /// The takes (those that found the pool empty too) within this long of each other count as
    /// one burst, the demand a pool that may grow keeps ready for.
    static constexpr std::chrono::milliseconds burst_window{1000};

    warm_pool(asio::any_io_executor exec, std::size_t size, std::chrono::milliseconds max_age,
              early_bytes policy, opener open)
        : warm_pool(std::move(exec), size, size, max_age, policy, std::move(open)) {}

    warm_pool(asio::any_io_executor exec, std::size_t size, std::size_t max_size,
              std::chrono::milliseconds max_age, early_bytes policy, opener open)
        : exec_(std::move(exec))
        , size_(size)
        , max_size_(std::max(size, max_size))
        , target_(size)
        , max_age_(max_age)
        , policy_(policy)
        , open_(std::move(open))
        , sweep_(exec_)
        , retry_(exec_)
        , refill_(exec_) {}

    warm_pool(const warm_pool&) = delete;
    warm_pool& operator=(const warm_pool&) = delete;

    ~warm_pool() { stop(); }

    /// Starts filling the pool and expiring old connections.
    void start() {
        fill();
        asio::co_spawn(exec_, sweep(this->shared_from_this()), asio::detached);
    }

    /// Closes every waiting connection and stops refilling.
    void stop() noexcept {
        stopped_ = true;
        for (auto& e : idle_) {
            retire(*e);
        }
        idle_.clear();
        publish();
        sweep_.cancel();
        retry_.cancel();
        refill_.cancel();
    }

    /// The freshest live connection, or nullopt when none is ready (then dial as usual).
    /// `claim`: the one an app connection handed over from another worker holds on this pool,
    /// released as the connection leaves the ready ones (not after the take: while a take
    /// waits for its connection's watch to stop, the connection would count as both taken and
    /// claimed, and other workers would see one fewer than there are).
    asio::awaitable<std::optional<warm_connection<Conn>>> take(ready_claim claim = {}) {
        auto self = this->shared_from_this();
        note_take();
        while (!idle_.empty()) {
            auto e = std::move(idle_.back());
            idle_.pop_back();
            publish();
            claim.release();
            if (e->dead || age(*e) >= max_age_) {
                retire(*e);
                continue;
            }
            e->taken = true;
            // Stop the watch and let it let go of the connection. One cancel may not do: a
            // TLS read that had a record delivered just before it (a session ticket) goes on
            // to read again, so cancel again each time it has run, a bounded number of times.
            for (int tries = 0; e->watching && tries < 64; ++tries) {
                error_code ignored;
                bottom_socket(*e->conn).cancel(ignored);
                co_await asio::post(exec_, asio::use_awaitable);
            }
            if (e->watching) {
                retire(*e);
                continue;
            }
            if (e->dead || !still_open(bottom_socket(*e->conn))) {
                retire(*e);
                continue;
            }
            fill_soon();
            co_return warm_connection<Conn>{std::move(*e->conn), std::move(e->received)};
        }
        fill_soon();
        co_return std::nullopt;
    }

    std::size_t idle() const noexcept { return idle_.size(); }

    /// idle(), readable from any thread: another worker that found its own pool empty looks
    /// here before it dials (client_pools hands the app's connection over).
    std::size_t ready() const noexcept { return ready_.load(std::memory_order_relaxed); }

    /// Claims outstanding (any thread).
    std::size_t claimed() const noexcept { return claims_->load(std::memory_order_relaxed); }

    /// The ready connections not claimed by app connections on their way here (any thread).
    std::size_t unclaimed() const noexcept {
        const std::size_t ready = this->ready();
        const std::size_t claimed = this->claimed();
        return ready > claimed ? ready - claimed : 0;
    }

    /// Claims a ready connection for an app connection about to be handed over to this pool's
    /// worker (any thread); empty when every ready connection is claimed already. Without
    /// claims, every app connection of a burst on a worker whose pool ran out would see the
    /// same ready count here, before this worker took any: more would come than there are
    /// connections, and the rest would dial here after two thread hops. (A take on this worker
    /// between the claim and the handed connection's take can still leave it without one.)
    ready_claim claim() noexcept {
        std::size_t claimed = claims_->load(std::memory_order_relaxed);
        do {
            if (claimed >= ready()) {
                return {};
            }
        } while (!claims_->compare_exchange_weak(claimed, claimed + 1, std::memory_order_relaxed));
        return ready_claim(claims_);
    }

    /// How many connections the pool keeps ready now: `size`, or more after a burst.
    std::size_t target() const noexcept { return target_; }

private:
    using clock = std::chrono::steady_clock;

    struct entry {
        std::optional<Conn> conn;
        clock::time_point born = clock::now();
        std::vector<std::uint8_t> received;
        bool watching = false; ///< the watch may still touch the connection
        bool taken = false;
        bool dead = false;
    };

    clock::duration age(const entry& e) const noexcept { return clock::now() - e.born; }

    void publish() noexcept { ready_.store(idle_.size(), std::memory_order_relaxed); }

    static void retire(entry& e) noexcept {
        e.taken = true;
        if (e.conn) {
            e.conn->close();
        }
    }

    // Whether the server has not closed or reset `s`: nothing to read without waiting, or
    // bytes to read (a peek, which leaves them for the relay).
    static bool still_open(asio::ip::tcp::socket& s) noexcept {
        if (!s.is_open()) {
            return false;
        }
        std::uint8_t b = 0;
        const ssize_t n = ::recv(s.native_handle(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
        return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    }

    // A take: with room to grow, the takes within burst_window of it are the demand to keep
    // ready for (a burst that reaches the current target also keeps it from shrinking).
    void note_take() {
        if (max_size_ == size_) {
            return;
        }
        const auto now = clock::now();
        recent_.push_back(now);
        while (recent_.size() > max_size_ || now - recent_.front() > burst_window) {
            recent_.pop_front();
        }
        if (recent_.size() < target_) {
            return;
        }
        grown_at_ = now;
        if (recent_.size() > target_) {
            target_ = recent_.size();
            log::debug("pool: {} connections taken within {} ms; keeping {} ready", target_,
                       burst_window.count(), target_);
        }
    }

    // Back to size_ once no burst has reached the target for max_age_.
    void shrink_if_quiet() {
        if (target_ > size_ && clock::now() - grown_at_ >= max_age_) {
            target_ = size_;
            log::debug("pool: no burst for {} s; back to {} ready",
                       std::chrono::duration_cast<std::chrono::seconds>(max_age_).count(), size_);
        }
    }

    // Opens connections until target_ are waiting or opening.
    void fill() {
        while (!stopped_ && !backing_off_ && idle_.size() + opening_ < target_) {
            ++opening_;
            asio::co_spawn(exec_, open_one(this->shared_from_this()), asio::detached);
        }
    }

    // fill(), refill_delay from now. A take's replacements opened at once would run on this
    // worker ahead of the taking app's own work: their connect and TLS ClientHello (a key
    // share) before the app's first bytes go out, the server's reply to them (the key
    // agreement) while the answer to those bytes comes back. One warm TLS connection taken after
    // a pause: first echoed byte after 1.8 ms with the replacement opened at once, about the
    // cold connection's 2.0 ms (bench, 2026-12-04); the delay moves that work past the
    // exchange on loopback, and past the app's first bytes on any network.
    void fill_soon() {
        if (refill_armed_ || stopped_) {
            return;
        }
        refill_armed_ = true;
        refill_.expires_after(refill_delay);
        refill_.async_wait([self = this->shared_from_this()](const error_code& ec) {
            self->refill_armed_ = false;
            if (!ec) {
                self->fill();
            }
        });
    }

    static asio::awaitable<std::optional<Conn>> open_guarded(warm_pool& self) {
        try {
            co_return co_await self.open_();
        } catch (const std::exception& e) {
            log::error("pool: cannot open a connection: {}", e.what());
        }
        co_return std::nullopt;
    }

    static asio::awaitable<void> open_one(std::shared_ptr<warm_pool> self) {
        auto conn = co_await open_guarded(*self);
        --self->opening_;
        if (self->stopped_) {
            if (conn) {
                conn->close();
            }
            co_return;
        }
        if (!conn) {
            self->back_off();
            co_return;
        }
        self->delay_ = std::chrono::milliseconds(0);
        auto e = std::make_shared<entry>();
        e->conn.emplace(std::move(*conn));
        e->watching = true;
        self->idle_.push_back(e);
        self->publish();
        asio::co_spawn(self->exec_, watch(self, e), asio::detached);
        log::debug("pool: {} warm connection{} ready", self->idle_.size(),
                   self->idle_.size() == 1 ? "" : "s");
    }

    // The server is unreachable: try again later instead of spinning.
    void back_off() {
        if (backing_off_) {
            return;
        }
        backing_off_ = true;
        delay_ = std::clamp(delay_ * 2, std::chrono::milliseconds(500),
                            std::chrono::duration_cast<std::chrono::milliseconds>(max_age_));
        log::debug("pool: opening failed; retrying in {} ms", delay_.count());
        retry_.expires_after(delay_);
        retry_.async_wait([self = this->shared_from_this()](const error_code& ec) {
            self->backing_off_ = false;
            if (!ec) {
                self->fill();
            }
        });
    }

    // Watches a waiting connection until it is taken, retired, or found closed by the server.
    static asio::awaitable<void> watch(std::shared_ptr<warm_pool> self, std::shared_ptr<entry> e) {
        std::vector<std::uint8_t> buf(4096);
        for (;;) {
            // Taken or retired before this watch first ran (it was only queued then): the
            // cancellation found nothing to cancel, so look before reading.
            if (e->taken) {
                break;
            }
            auto r = co_await e->conn->read_some(std::span<std::uint8_t>(buf));
            if (r.n != 0) {
                // The server spoke first (a banner through tcp or tls): the connection is
                // alive; keep the bytes for the app, and stop watching (take() peeks once
                // more). Before a websocket upgrade a server says nothing: the connection is
                // broken.
                e->received.insert(e->received.end(), buf.begin(), buf.begin() + r.n);
                if (self->policy_ == early_bytes::fatal) {
                    log::debug("pool: the server sent {} bytes before the upgrade request; "
                               "dropping the connection",
                               r.n);
                    e->dead = true;
                }
                break;
            }
            if (e->taken) {
                break;
            }
            // Closed or reset by the server (restarted, or its own timeout).
            log::debug("pool: a waiting connection ended: {}", r.ec.message());
            e->dead = true;
            break;
        }
        e->watching = false;
        if (e->dead && !e->taken) {
            e->conn->close();
            std::erase(self->idle_, e);
            self->publish();
            self->fill();
        }
    }

    // Closes connections that waited max_age_, and opens their replacements.
    static asio::awaitable<void> sweep(std::shared_ptr<warm_pool> self) {
        for (;;) {
            auto next = clock::now() + self->max_age_;
            for (const auto& e : self->idle_) {
                next = std::min(next, e->born + self->max_age_);
            }
            self->sweep_.expires_at(next);
            auto [ec] = co_await self->sweep_.async_wait(use_tuple);
            if (ec || self->stopped_) {
                co_return;
            }
            self->shrink_if_quiet();
            std::size_t expired = 0;
            std::erase_if(self->idle_, [&](const std::shared_ptr<entry>& e) {
                if (self->age(*e) < self->max_age_) {
                    return false;
                }
                retire(*e);
                ++expired;
                return true;
            });
            self->publish();
            if (expired != 0) {
                log::debug("pool: {} connection{} expired unused; replacing", expired,
                           expired == 1 ? "" : "s");
                self->fill();
            }
        }
    }

    asio::any_io_executor exec_;
    std::size_t size_;
    std::size_t max_size_;
    std::size_t target_;
    std::deque<clock::time_point> recent_; // takes within burst_window, when it may grow
    clock::time_point grown_at_{};         // when a burst last reached target_
    std::chrono::steady_clock::duration max_age_;
    early_bytes policy_;
    opener open_;
    asio::steady_timer sweep_;
    asio::steady_timer retry_;
    asio::steady_timer refill_;
    std::vector<std::shared_ptr<entry>> idle_;
    std::atomic<std::size_t> ready_{0}; // idle_.size(), for other threads
    // Claims outstanding (claim()); shared with each claim, which may outlive the pool.
    std::shared_ptr<std::atomic<std::size_t>> claims_ =
        std::make_shared<std::atomic<std::size_t>>(0);
    std::size_t opening_ = 0;
    std::chrono::milliseconds delay_{0};
    bool backing_off_ = false;
    bool refill_armed_ = false;
    bool stopped_ = false;
};

} // namespace kaminari::net

#pragma once

// Deadlines for single steps (handshakes, the wait for a request, the wait for an app's first
// bytes).

#include <kaminari/net/stream.hpp>

#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <memory>
#include <utility>

namespace kaminari::net {

/// A deadline over whatever the owner awaits while it lives: when `limit` passes first,
/// `on_expiry` runs (it closes the stream, or cancels its pending operation), so the awaited
/// operation fails, and expired() says it was the deadline. One timer wait and one small shared
/// flag: a fraction of what running the step beside a timer in a parallel group costs (two
/// spawned coroutines, a group, cancellation slots), which mattered per connection.
///
/// Declare it after the stream it acts on (so it is destroyed first): `on_expiry` runs only
/// while the deadline lives, never after. A step that completed at the moment the timer fired
/// may still see expired(): the caller decides whether what completed counts (bytes read do;
/// a closed stream does not).
class deadline {
public:
    template <class OnExpiry>
    deadline(const asio::any_io_executor& exec, std::chrono::steady_clock::duration limit,
             OnExpiry on_expiry)
        : timer_(exec, limit)
        , state_(std::make_shared<state>()) {
        timer_.async_wait(
            [st = state_, f = std::move(on_expiry)](const error_code& ec) mutable noexcept {
                if (!ec && st->armed) {
                    st->expired = true;
                    f();
                }
            });
    }

    deadline(const deadline&) = delete;
    deadline& operator=(const deadline&) = delete;

    /// The timer's destructor cancels the wait; a handler already queued (the timer fired, its
    /// handler not yet run) sees `armed` false and does nothing.
    ~deadline() { state_->armed = false; }

    bool expired() const noexcept { return state_->expired; }

private:
    struct state {
        bool armed = true;
        bool expired = false;
    };
    asio::steady_timer timer_;
    std::shared_ptr<state> state_;
};

} // namespace kaminari::net

#include "kaminari/net/mux_link.hpp"

#include <algorithm>

namespace kaminari::net::detail {

asio::awaitable<bool> mux_gate::acquire() {
    if (!busy_) {
        busy_ = true;
        co_return true;
    }
    auto w = std::make_shared<waiter>(exec_);
    waiters_.push_back(w);
    co_await w->timer.async_wait(use_tuple);
    if (!w->granted) {
        // Cancelled from outside, not by release(): not holding the gate, and no longer waiting.
        if (auto it = std::find(waiters_.begin(), waiters_.end(), w); it != waiters_.end()) {
            waiters_.erase(it);
        }
        co_return false;
    }
    co_return true;
}

void mux_gate::release() noexcept {
    if (waiters_.empty()) {
        busy_ = false;
        return;
    }
    // The gate passes straight to the next waiter: nobody can take it in between.
    auto w = std::move(waiters_.front());
    waiters_.pop_front();
    w->granted = true;
    w->timer.cancel();
}

void mux_state::written(mux_session& s, std::size_t n, bool delivered) noexcept {
    s.queued -= std::min(n, s.queued);
    queued -= std::min(n, queued);
    if (delivered) {
        s.up += n;
        up += n;
    }
    reader_wake.cancel();
}

void mux_state::discard(mux_session& s) noexcept {
    const std::size_t n = s.queue.size();
    std::vector<std::uint8_t>().swap(s.queue);
    written(s, n, false);
}

void mux_state::abort(mux_session& s) noexcept {
    s.aborted = true;
    if (s.target) {
        s.target->close();
    }
    discard(s);
    s.wake.cancel();
}

void mux_state::abort_all() noexcept {
    for (auto& [id, s] : sessions) {
        abort(*s);
    }
    reader_wake.cancel();
}

} // namespace kaminari::net::detail

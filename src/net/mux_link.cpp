#include "kaminari/net/mux_link.hpp"

#include <algorithm>

namespace kaminari::net::detail {

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

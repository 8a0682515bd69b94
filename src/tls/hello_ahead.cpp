#include "kaminari/tls/hello_ahead.hpp"

#include <utility>

namespace kaminari::tls {

void hello_ahead::make() noexcept {
    // With 0rtt the ClientHello has to wait for the app's first bytes (see the class).
    if (next_ || ctx_->options().early_data) {
        return;
    }
    try {
        engine e = ctx_->make_engine();
        // Before the handshake, an SSL has a session only if one was set for resumption.
        resumes_ = SSL_get0_session(e.native_handle()) != nullptr;
        error_code ec;
        // The ClientHello is written to the output queue; the engine then waits for input.
        e.handshake(ec);
        if (!ec && e.pending_output() != 0) {
            next_.emplace(std::move(e));
        }
    } catch (...) {
        // Out of memory: the connection makes its engine when it needs it.
    }
}

bool hello_ahead::ready() const noexcept {
    // One made when no session was cached (the first connections, or all taken by a burst)
    // would make a full handshake, which costs the client twice a resumed one's CPU; so while
    // two or more are cached now, take() makes a new engine with one. Not with just one: each
    // connection brings one ticket and its next engine is made before that ticket comes, so
    // taking the last one here would leave the next engine none, and so on for every
    // connection. Left alone, this engine's full handshake brings two, one to spare.
    return next_ && (resumes_ || ctx_->sessions().size() < 2);
}

engine hello_ahead::take() {
    if (!ready()) {
        next_.reset();
    }
    if (next_) {
        engine e = std::move(*next_);
        next_.reset();
        return e;
    }
    return ctx_->make_engine();
}

} // namespace kaminari::tls

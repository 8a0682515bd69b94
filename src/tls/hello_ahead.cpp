#include "kaminari/tls/hello_ahead.hpp"

#include <utility>

namespace kaminari::tls {

void hello_ahead::make() noexcept {
    // With 0rtt the ClientHello has to wait for the first flight (see the class).
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
            made_at_ = clock::now();
        }
    } catch (...) {
        // Out of memory: the connection makes its engine when it needs it.
    }
}

bool hello_ahead::ready() const {
    if (!next_ || clock::now() - made_at_ > max_wait_) {
        return false;
    }
    // One made when no session was cached (the first connections, or all taken by a burst)
    // would make a full handshake, which costs the client twice a resumed one's CPU; so while
    // two or more can be taken now, take() makes a new engine with one. Not with just one:
    // each connection brings one ticket, and each worker makes its next engine before that
    // ticket comes, so taking the last one here would leave the next engine made (here or on
    // another worker) none, and so on: one worker would make every engine twice, for good.
    // Left alone, this engine's full handshake brings one ticket or more (OpenSSL servers send
    // two, Go's one), and within a few connections every worker's engines carry one.
    return resumes_ || ctx_->sessions().usable() < 2;
}

engine hello_ahead::take(bool* made_ahead) {
    const bool use = ready();
    if (made_ahead != nullptr) {
        *made_ahead = use;
    }
    if (use) {
        engine e = std::move(*next_);
        next_.reset();
        return e;
    }
    next_.reset();
    return ctx_->make_engine();
}

} // namespace kaminari::tls

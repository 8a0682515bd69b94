#pragma once

// A client engine made before its connection. Making one is SSL_new, the cached session, and
// the ClientHello with its X25519 key share: about 70 µs of a resumed handshake's 315 µs of
// CPU on the test machine (bench/README.md), all of it on the connection's path when done
// after the TCP connect. Made ahead, while the worker waits for the server's reply to the
// connection before it, the ClientHello goes out the moment the next connect completes.

#include <kaminari/tls/context.hpp>
#include <kaminari/tls/engine.hpp>

#include <optional>

namespace kaminari::tls {

/// One engine made ahead, for one worker thread.
///
/// Not for `0rtt`: with early data the ClientHello goes out together with the app's first
/// bytes, which are not there before the connection. The session is taken from the context's
/// cache when the engine is made, so a connection's ticket is one that was cached before the
/// connection ahead of it finished its handshake (the cache holds up to 256).
///
/// Thread safety: none. One thread makes, takes and destroys (an engine's buffers are borrowed
/// from the buffer pool of the thread that first used them).
class hello_ahead {
public:
    /// `ctx` must outlive this.
    explicit hello_ahead(const client_context& ctx) noexcept
        : ctx_(&ctx) {}

    /// Makes the next engine and writes its ClientHello into its pending output, unless one
    /// is waiting or the context's options ask for early data. A failure (OpenSSL cannot allocate)
    /// leaves none waiting: take() then makes one as client_context::make_engine() does.
    void make() noexcept;

    /// Whether take() gives the engine made ahead: one is waiting, and it offers a session to
    /// resume or the cache holds fewer than two now (see the definition for why two).
    bool ready() const noexcept;

    /// The engine made ahead when ready(), its ClientHello in pending_output() (its
    /// handshake() sends it and goes on from there); otherwise a new one from
    /// client_context::make_engine(). Throws what make_engine() throws.
    engine take();

private:
    const client_context* ctx_;
    std::optional<engine> next_;
    bool resumes_ = false; ///< next_ offers a cached session
};

} // namespace kaminari::tls

#pragma once

// A client engine made before its connection. Making one is SSL_new, the cached session, and
// the ClientHello with its X25519 key share: about 70 µs of the 315 µs that a resumed
// handshake costs both sides together (engines in memory, on the 2-core test machine), all of
// it on the connection's path when done after the TCP connect. Made ahead, while the worker
// waits for the server's reply to the connection before it, the ClientHello goes out the
// moment the next connect completes.

#include <kaminari/tls/context.hpp>
#include <kaminari/tls/engine.hpp>

#include <chrono>
#include <optional>

namespace kaminari::tls {

/// One engine made ahead, for one worker thread.
///
/// Not for `0rtt`: with early data the ClientHello goes out together with the first flight,
/// which is not there before the connection. The session is taken from the context's cache when
/// the engine is made, so a connection's ticket is one that was cached before the connection
/// ahead of it finished its handshake.
///
/// While it waits, the engine holds its SSL and a ciphertext buffer (64 KiB, from the worker's
/// buffer pool) with the ClientHello in it.
///
/// Thread safety: none. The worker's thread makes and takes; destroying it elsewhere is fine
/// once that worker has stopped (the buffer goes to the destroying thread's pool).
class hello_ahead {
public:
    using clock = std::chrono::steady_clock;

    /// An engine that waited longer is made again at take(): its ticket may have expired or
    /// been dropped by the server meanwhile, and a newer one is cached.
    static constexpr clock::duration default_max_wait = std::chrono::seconds(30);

    /// `ctx` must outlive this.
    explicit hello_ahead(const client_context& ctx,
                         clock::duration max_wait = default_max_wait) noexcept
        : ctx_(&ctx)
        , max_wait_(max_wait) {}

    /// Makes the next engine and writes its ClientHello into its pending output, unless one
    /// is waiting or the context's options ask for early data. A failure (OpenSSL cannot
    /// allocate) leaves none waiting: take() then makes one as client_context::make_engine()
    /// does.
    void make() noexcept;

    /// Whether take() gives the engine made ahead: one is waiting, made within max_wait, and
    /// it offers a session to resume or fewer than two can be taken from the cache now (see
    /// the definition).
    bool ready() const;

    /// The engine made ahead when ready(), its ClientHello in pending_output() (its
    /// handshake() sends it and goes on from there); otherwise a new one from
    /// client_context::make_engine() (one made ahead is dropped). `made_ahead`, if given, says
    /// which. Throws what make_engine() throws.
    engine take(bool* made_ahead = nullptr);

private:
    const client_context* ctx_;
    clock::duration max_wait_;
    std::optional<engine> next_;
    clock::time_point made_at_{};
    bool resumes_ = false; ///< next_ offers a cached session
};

} // namespace kaminari::tls

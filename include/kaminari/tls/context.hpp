#pragma once

// The SSL_CTX of each program, built once at start-up from the parsed options and shared (by
// const reference) by every connection on every worker thread; engines for new connections
// come from make_engine().

#include <kaminari/options.hpp>
#include <kaminari/tls/engine.hpp>
#include <kaminari/tls/openssl_ptr.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

namespace kaminari::tls {

/// The client's sessions, kept per process for resumption and 0-RTT, filled by OpenSSL's
/// new-session callback. Holds at most `capacity` sessions, newest last.
///
/// A TLS 1.3 ticket serves one connection and each connection brings one (two after a full
/// handshake), so the cache has to hold a ticket for each connection that starts while others
/// are in flight. With 16, at 50 connections in flight 2-7 % of the handshakes were full ones
/// (a full one costs the client twice a resumed one's CPU), at 200 in flight 11-35 %; with 256,
/// under 0.5 % and 3-5 % (bench/handshake_cost.py, bench/README.md).
///
/// Thread safety: all members may be called concurrently (one mutex).
class session_cache {
public:
    static constexpr std::size_t capacity = 256;

    /// Stores `session` (dropping the oldest when full).
    void put(ssl_session_ptr session);

    /// The newest resumable, unexpired session, or null. A TLS 1.3 session (a ticket) is
    /// removed, since a ticket should be used once (RFC 8446 C.4) and the server's anti-replay
    /// rejects early data on a reused one; a TLS 1.2 session stays for further connections.
    ssl_session_ptr take();

    /// How many take() calls would return a session now: the unexpired resumable TLS 1.3
    /// tickets, or SIZE_MAX when a TLS 1.2 session (which take() keeps) is among those.
    std::size_t usable() const;

    std::size_t size() const;
    void clear();

private:
    mutable std::mutex mutex_;
    std::deque<ssl_session_ptr> sessions_;
};

/// The client's TLS settings: TLS 1.2 minimum; peer verification against the system trust
/// store (SSL_CTX_set_default_verify_paths, so SSL_CERT_FILE / SSL_CERT_DIR override it) and
/// the hostname `sni` unless `insecure`; SNI; ALPN; sessions kept for resumption; 0-RTT when
/// `early_data`.
///
/// Thread safety: after construction, make_engine() may be called from any thread.
/// The pin of a certificate's key, as `pin=` takes it: base64 of the SHA-256 of its DER
/// SubjectPublicKeyInfo (HPKP's pin-sha256). Empty if OpenSSL fails.
std::string spki_pin(X509* cert);

namespace detail {
int verify_with_pins(int preverify_ok, X509_STORE_CTX* store);
}

class client_context {
public:
    /// Builds the SSL_CTX. Throws config_error for an ALPN entry that is empty or longer than
    /// 255 bytes, startup_error when OpenSSL fails (message says why). With `insecure` it logs
    /// a warning.
    explicit client_context(const tls_client_options& opts);

    client_context(client_context&&) noexcept = default;
    client_context& operator=(client_context&&) noexcept = default;

    /// A client engine for one new connection: SNI = sni (unless an IP literal), hostname or
    /// IP check against sni (unless insecure), a cached session for resumption if any, early
    /// data enabled when the options ask for it. With `mux` (a mux link, when the options have
    /// mux_alpn) it offers codec::mux::tls_alpn last, after `alpn=` or http/1.1: a server
    /// that does not know it (kaminaris before it takes http/1.1, or else the first one)
    /// selects another, which the caller sees in engine::alpn(). Throws std::system_error if
    /// OpenSSL cannot allocate.
    engine make_engine(bool mux = false) const;

    SSL_CTX* native_handle() const noexcept { return ctx_.get(); }
    const tls_client_options& options() const noexcept { return opts_; }
    session_cache& sessions() const noexcept { return *sessions_; }

    /// `pin=` and whether `ca=` is given too (public for the verify callback).
    struct pin_policy {
        std::vector<std::string> pins; ///< `pin=`
        bool with_ca = false;          ///< `ca=` given too: the chain must verify as well
    };

private:
    tls_client_options opts_;
    std::unique_ptr<session_cache> sessions_; // stable address for the callback; outlives ctx_
    std::unique_ptr<pin_policy> pins_;        // for the verify callback (SSL_CTX ex data)
    std::vector<unsigned char> mux_alpn_;     // wire format of a mux link's ALPN list
    ssl_ctx_ptr ctx_;
};

/// The ALPN wire format (length-prefixed strings) of `protocols`. Throws config_error for an
/// empty entry or one longer than 255 bytes.
std::vector<unsigned char> alpn_wire_format(const std::vector<std::string>& protocols);

/// The server's TLS settings: TLS 1.2 minimum, server cipher preference (AES-GCM, ChaCha20
/// first for clients without AES hardware), the certificate chain and key from `cert=`/`key=`
/// (PEM or DER; RSA, ECDSA or Ed25519) or a self-signed certificate for `servername=`,
/// an OCSP response stapled when `ocsp=` is set, session tickets, early data up to
/// `default_max_early_data` bytes with OpenSSL's anti-replay, and ALPN answered with http/1.1
/// when offered, otherwise the client's first protocol.
///
/// Thread safety: after construction, make_engine() may be called from any thread.
class server_context {
public:
    static constexpr std::uint32_t default_max_early_data = 16384;

    /// Sessions the server keeps (SSL_CTX_sess_set_cache_size): with early data and
    /// anti-replay on, each TLS 1.3 ticket it issues is an entry until the ticket is used or
    /// expires (two hours), about 1.1 KB each. When full, the oldest goes; a client that
    /// resumes with it gets a full handshake instead.
    static constexpr std::size_t default_session_cache_size = 4096;

    /// Builds the SSL_CTX, reading every file now. Throws startup_error naming the file when a
    /// file is missing, unreadable, not a certificate/key/OCSP response, or when the key does
    /// not match the certificate; config_error when neither cert+key nor servername is set.
    explicit server_context(const tls_server_options& opts);

    server_context(server_context&&) noexcept = default;
    server_context& operator=(server_context&&) noexcept = default;

    /// A server engine for one new connection. Throws std::system_error if OpenSSL cannot
    /// allocate.
    engine make_engine() const;

    /// Early data accepted per connection (SSL_CTX_set_max_early_data); 0 turns 0-RTT off.
    /// Call before serving.
    void set_max_early_data(std::uint32_t bytes);

    /// How many sessions the server keeps (default_session_cache_size). Call before serving.
    void set_session_cache_size(std::size_t sessions);

    SSL_CTX* native_handle() const noexcept { return ctx_.get(); }

private:
    std::unique_ptr<std::vector<unsigned char>> ocsp_; // stable address for the callback
    ssl_ctx_ptr ctx_;
};

} // namespace kaminari::tls

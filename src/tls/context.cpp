#include "kaminari/tls/context.hpp"

#include <kaminari/codec/mux_cool.hpp>
#include <kaminari/error.hpp>
#include <kaminari/log.hpp>
#include <kaminari/tls/self_signed.hpp>

#include <openssl/pem.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>

namespace kaminari::tls {

namespace {

// Bulk-friendly AEAD suites only; no DHE, since no DH parameters are configured.
constexpr const char* server_tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
constexpr const char* server_tls13_ciphers =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

// Certificate, key and OCSP files are small; anything larger is a wrong path.
constexpr std::size_t max_file_size = 1024 * 1024;

template <class F>
auto checked(std::string_view what, F&& f) {
    error_code ec;
    auto r = call(ec, std::forward<F>(f));
    if (ec) {
        throw startup_error("tls: " + std::string(what) + ": " + ec.message());
    }
    return r;
}

std::string option_text(std::string_view option, const std::string& path) {
    return "'" + std::string(option) + "=" + path + "'";
}

std::vector<unsigned char> read_file(std::string_view option, const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw startup_error("tls: cannot read " + option_text(option, path) + ": " +
                            std::strerror(errno));
    }
    std::vector<unsigned char> bytes;
    char chunk[4096];
    while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
        bytes.insert(bytes.end(), chunk, chunk + in.gcount());
        if (bytes.size() > max_file_size) {
            throw startup_error("tls: " + option_text(option, path) + " is larger than 1 MiB");
        }
    }
    if (in.bad()) {
        throw startup_error("tls: cannot read " + option_text(option, path));
    }
    return bytes;
}

bool is_pem(const std::vector<unsigned char>& bytes) {
    std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return text.find("-----BEGIN ") != std::string_view::npos;
}

bool is_ip_literal(const std::string& name) {
    asn1_octet_string_ptr ip(a2i_IPADDRESS(name.c_str()));
    ERR_clear_error();
    return ip != nullptr;
}

// Never prompts on the terminal for an encrypted key: it is refused instead.
int no_password(char*, int, int, void*) {
    return 0;
}

std::string file_error(std::string_view option, const std::string& path, std::string_view what,
                       const error_code& ec) {
    std::string text = "tls: " + option_text(option, path) + " " + std::string(what);
    if (ec) {
        text += ": " + ec.message();
    }
    return text;
}

bio_ptr memory_bio(const std::vector<unsigned char>& bytes, error_code& ec) {
    return bio_ptr(
        call(ec, [&] { return BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())); }));
}

// The leaf first, then any chain certificates, from PEM (several blocks) or DER
// (concatenated certificates).
std::vector<x509_ptr> load_certificates(const std::string& path) {
    std::vector<unsigned char> bytes = read_file("cert", path);
    std::vector<x509_ptr> certs;
    error_code ec;
    if (is_pem(bytes)) {
        bio_ptr bio = memory_bio(bytes, ec);
        while (bio) {
            x509_ptr cert(call(
                ec, [&] { return PEM_read_bio_X509(bio.get(), nullptr, no_password, nullptr); }));
            if (!cert) {
                break;
            }
            certs.push_back(std::move(cert));
        }
        // Running out of PEM blocks ends the loop with PEM_R_NO_START_LINE: not an error.
        if (!certs.empty() &&
            ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == PEM_R_NO_START_LINE) {
            ec = {};
        }
    } else {
        const unsigned char* p = bytes.data();
        const unsigned char* end = bytes.data() + bytes.size();
        while (p < end) {
            x509_ptr cert(call(ec, [&] { return d2i_X509(nullptr, &p, end - p); }));
            if (!cert) {
                break;
            }
            certs.push_back(std::move(cert));
        }
    }
    if (certs.empty() || ec) {
        throw startup_error(file_error("cert", path, "is not a PEM or DER certificate", ec));
    }
    return certs;
}

evp_pkey_ptr load_private_key(const std::string& path) {
    std::vector<unsigned char> bytes = read_file("key", path);
    error_code ec;
    evp_pkey_ptr key;
    if (is_pem(bytes)) {
        if (bio_ptr bio = memory_bio(bytes, ec)) {
            key.reset(call(ec, [&] {
                return PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr);
            }));
        }
    } else {
        const unsigned char* p = bytes.data();
        key.reset(call(
            ec, [&] { return d2i_AutoPrivateKey(nullptr, &p, static_cast<long>(bytes.size())); }));
    }
    OPENSSL_cleanse(bytes.data(), bytes.size());
    if (!key) {
        throw startup_error(
            file_error("key", path, "is not an unencrypted PEM or DER private key", ec));
    }
    return key;
}

void use_certificate_files(SSL_CTX* ctx, const std::vector<x509_ptr>& certs,
                           const evp_pkey_ptr& key, const std::string& cert_path,
                           const std::string& key_path) {
    error_code ec;
    call(ec, [&] { return SSL_CTX_use_certificate(ctx, certs.front().get()); });
    if (ec) {
        throw startup_error(file_error("cert", cert_path, "cannot be used", ec));
    }
    for (std::size_t i = 1; i < certs.size(); ++i) {
        call(ec, [&] { return SSL_CTX_add1_chain_cert(ctx, certs[i].get()); });
        if (ec) {
            throw startup_error(file_error("cert", cert_path, "has a bad chain certificate", ec));
        }
    }
    call(ec, [&] { return SSL_CTX_use_PrivateKey(ctx, key.get()); });
    if (!ec) {
        call(ec, [&] { return SSL_CTX_check_private_key(ctx); });
    }
    if (ec) {
        throw startup_error(
            file_error("key", key_path,
                       "does not match the certificate in " + option_text("cert", cert_path), ec));
    }
}

void use_certificate(SSL_CTX* ctx, const std::vector<x509_ptr>& certs, const evp_pkey_ptr& key,
                     const tls_server_options& opts) {
    use_certificate_files(ctx, certs, key, opts.cert, opts.key);
}

// `pin=`: the pins, reached from the verify callback through the SSL_CTX's ex data.
int pin_index() {
    static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

int on_new_session(SSL* ssl, SSL_SESSION* session) {
    auto* cache = static_cast<session_cache*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
    if (cache == nullptr) {
        return 0;
    }
    // Returning 1 hands OpenSSL's reference to the cache.
    cache->put(ssl_session_ptr(session));
    return 1;
}

int on_ocsp_status(SSL* ssl, void* arg) {
    const auto* der = static_cast<const std::vector<unsigned char>*>(arg);
    openssl_bytes_ptr copy(static_cast<unsigned char*>(OPENSSL_memdup(der->data(), der->size())));
    if (!copy) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    if (SSL_set_tlsext_status_ocsp_resp(ssl, copy.get(), static_cast<long>(der->size())) != 1) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    copy.release(); // now owned by the SSL
    return SSL_TLSEXT_ERR_OK;
}

// `arg` non-null: codec::mux::tls_alpn (kaminaric's tls;mux=<n>) is taken first when offered.
int on_alpn_select(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                   unsigned int inlen, void* arg) {
    constexpr std::string_view http11 = "http/1.1";
    const unsigned char* first = nullptr;
    unsigned char first_len = 0;
    const unsigned char* http = nullptr;
    for (unsigned int i = 0; i < inlen;) {
        unsigned char len = in[i];
        // A zero-length or overrunning entry: the list is malformed, negotiate nothing.
        if (len == 0 || len > inlen - i - 1) {
            return SSL_TLSEXT_ERR_NOACK;
        }
        const unsigned char* name = in + i + 1;
        const std::string_view proto(reinterpret_cast<const char*>(name), len);
        if (arg != nullptr && proto == codec::mux::tls_alpn) {
            *out = name;
            *outlen = len;
            return SSL_TLSEXT_ERR_OK;
        }
        if (proto == http11 && http == nullptr) {
            http = name;
        }
        if (first == nullptr) {
            first = name;
            first_len = len;
        }
        i += 1u + len;
    }
    if (http != nullptr) {
        *out = http;
        *outlen = static_cast<unsigned char>(http11.size());
        return SSL_TLSEXT_ERR_OK;
    }
    if (first == nullptr) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    *out = first;
    *outlen = first_len;
    return SSL_TLSEXT_ERR_OK;
}

// Whether take() may return `s` at `now`: not expired, and resumable.
bool takeable(SSL_SESSION* s, long now) noexcept {
    return SSL_SESSION_get_time(s) + SSL_SESSION_get_timeout(s) > now &&
           SSL_SESSION_is_resumable(s) == 1;
}

} // namespace

void session_cache::put(ssl_session_ptr session) {
    std::lock_guard lock(mutex_);
    if (sessions_.size() >= capacity) {
        sessions_.pop_front();
    }
    sessions_.push_back(std::move(session));
}

ssl_session_ptr session_cache::take() {
    std::lock_guard lock(mutex_);
    auto now = static_cast<long>(std::time(nullptr));
    while (!sessions_.empty()) {
        SSL_SESSION* s = sessions_.back().get();
        if (!takeable(s, now)) {
            sessions_.pop_back();
            continue;
        }
        if (SSL_SESSION_get_protocol_version(s) == TLS1_3_VERSION) {
            ssl_session_ptr out = std::move(sessions_.back());
            sessions_.pop_back();
            return out;
        }
        SSL_SESSION_up_ref(s);
        return ssl_session_ptr(s);
    }
    return {};
}

std::size_t session_cache::usable() const {
    std::lock_guard lock(mutex_);
    auto now = static_cast<long>(std::time(nullptr));
    std::size_t n = 0;
    for (const auto& session : sessions_) {
        SSL_SESSION* s = session.get();
        if (!takeable(s, now)) {
            continue;
        }
        if (SSL_SESSION_get_protocol_version(s) != TLS1_3_VERSION) {
            return std::numeric_limits<std::size_t>::max();
        }
        ++n;
    }
    return n;
}

std::size_t session_cache::size() const {
    std::lock_guard lock(mutex_);
    return sessions_.size();
}

void session_cache::clear() {
    std::lock_guard lock(mutex_);
    sessions_.clear();
}

std::vector<unsigned char> alpn_wire_format(const std::vector<std::string>& protocols) {
    std::vector<unsigned char> wire;
    for (const auto& p : protocols) {
        // RFC 7301 3.1: each protocol name is 1..255 bytes.
        if (p.empty() || p.size() > 255) {
            throw config_error("tls: bad 'alpn=' entry '" + p +
                               "'; expected comma-separated names of 1..255 bytes");
        }
        wire.push_back(static_cast<unsigned char>(p.size()));
        wire.insert(wire.end(), p.begin(), p.end());
    }
    return wire;
}

// The chain is checked as usual, then the leaf's key against the pins. With pins and no `ca=`
// the chain need not verify (a self-signed server is fine): only the name check and the pin
// count. The failure says which key the server has, so a changed key can be told from a typo.
int detail::verify_with_pins(int preverify_ok, X509_STORE_CTX* store) {
    SSL* ssl =
        static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
    const auto* policy = static_cast<const client_context::pin_policy*>(
        SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), pin_index()));
    if (policy == nullptr) {
        return preverify_ok;
    }
    const int depth = X509_STORE_CTX_get_error_depth(store);
    const int err = X509_STORE_CTX_get_error(store);
    if (!preverify_ok) {
        const bool name_error =
            err == X509_V_ERR_HOSTNAME_MISMATCH || err == X509_V_ERR_IP_ADDRESS_MISMATCH;
        if (name_error || policy->with_ca) {
            return 0; // the name always counts; with ca= the chain does too
        }
        // Pins alone: chain errors do not count. Clear them so the handshake goes on.
        X509_STORE_CTX_set_error(store, X509_V_OK);
    }
    if (depth != 0) {
        return 1;
    }
    X509* leaf = X509_STORE_CTX_get_current_cert(store);
    const std::string pin = leaf != nullptr ? spki_pin(leaf) : std::string();
    for (const std::string& p : policy->pins) {
        if (p == pin) {
            return 1;
        }
    }
    log::warn("tls: the server's key has pin={}, which is not one of the pins given", pin);
    X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
}

client_context::client_context(const tls_client_options& opts)
    : opts_(opts)
    , sessions_(std::make_unique<session_cache>()) {
    ctx_.reset(checked("SSL_CTX_new", [] { return SSL_CTX_new(TLS_client_method()); }));
    SSL_CTX* ctx = ctx_.get();
    checked("minimum version", [&] { return SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION); });
    // An idle connection gives its 16 KiB+ record buffers back (they are taken again on the
    // next record): most tunnel connections are idle most of the time.
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);

    if (opts_.insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
        log::warn("tls: 'insecure' is set: the server's certificate is not verified");
    } else {
        if (!opts_.ca.empty()) {
            // Exactly these CAs: not the system store, not SSL_CERT_FILE/SSL_CERT_DIR.
            ERR_clear_error();
            if (SSL_CTX_load_verify_locations(ctx, opts_.ca.c_str(), nullptr) != 1) {
                throw startup_error(
                    file_error("ca", opts_.ca, "holds no usable CA certificate", take_error()));
            }
        } else {
            checked("loading the system trust store",
                    [&] { return SSL_CTX_set_default_verify_paths(ctx); });
        }
        if (!opts_.pins.empty()) {
            pins_ = std::make_unique<pin_policy>(pin_policy{opts_.pins, !opts_.ca.empty()});
            SSL_CTX_set_ex_data(ctx, pin_index(), pins_.get());
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, detail::verify_with_pins);
        } else {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
        }
    }

    if (!opts_.cert.empty()) {
        // A client certificate, for servers that require one (kaminaris client_ca=).
        use_certificate_files(ctx, load_certificates(opts_.cert), load_private_key(opts_.key),
                              opts_.cert, opts_.key);
    }

    if (!opts_.alpn.empty()) {
        std::vector<unsigned char> wire = alpn_wire_format(opts_.alpn);
        // SSL_CTX_set_alpn_protos returns 0 on success.
        ERR_clear_error();
        if (SSL_CTX_set_alpn_protos(ctx, wire.data(), static_cast<unsigned>(wire.size())) != 0) {
            throw startup_error("tls: cannot set the ALPN list: " + take_error().message());
        }
    }
    if (opts_.mux_alpn) {
        std::vector<std::string> mux =
            opts_.alpn.empty() ? std::vector<std::string>{"http/1.1"} : opts_.alpn;
        mux.emplace_back(codec::mux::tls_alpn);
        mux_alpn_ = alpn_wire_format(mux);
    }

    // Sessions go to our cache (shared by all worker threads), not OpenSSL's internal one.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_set_app_data(ctx, sessions_.get());
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
}

engine client_context::make_engine(bool mux) const {
    engine e(ctx_.get(), role::client);
    SSL* ssl = e.native_handle();
    // SSL_set_alpn_protos returns 0 on success.
    if (mux && !mux_alpn_.empty() &&
        SSL_set_alpn_protos(ssl, mux_alpn_.data(), static_cast<unsigned>(mux_alpn_.size())) != 0) {
        throw std::system_error(take_error(), "tls: ALPN");
    }
    const std::string& name = opts_.sni;
    bool ip = !name.empty() && is_ip_literal(name);
    error_code ec;
    // RFC 6066 3: SNI carries host names only, never IP literals.
    if (!name.empty() && !ip) {
        call(ec, [&] { return SSL_set_tlsext_host_name(ssl, name.c_str()); });
        if (ec) {
            throw std::system_error(ec, "tls: SNI");
        }
    }
    if (!opts_.insecure && !name.empty()) {
        call(ec, [&] {
            return ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str())
                      : SSL_set1_host(ssl, name.c_str());
        });
        if (ec) {
            throw std::system_error(ec, "tls: hostname check");
        }
    }
    if (ssl_session_ptr session = sessions_->take()) {
        // Takes its own reference; a failure only means a full handshake.
        SSL_set_session(ssl, session.get());
        ERR_clear_error();
    }
    e.enable_early_data(opts_.early_data);
    return e;
}

server_context::server_context(const tls_server_options& opts) {
    ctx_.reset(checked("SSL_CTX_new", [] { return SSL_CTX_new(TLS_server_method()); }));
    SSL_CTX* ctx = ctx_.get();
    checked("minimum version", [&] { return SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION); });
    // An idle connection gives its 16 KiB+ record buffers back (they are taken again on the
    // next record): most tunnel connections are idle most of the time.
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA);
    checked("cipher list", [&] { return SSL_CTX_set_cipher_list(ctx, server_tls12_ciphers); });
    checked("cipher suites", [&] { return SSL_CTX_set_ciphersuites(ctx, server_tls13_ciphers); });

    if (!opts.cert.empty() || !opts.key.empty()) {
        if (opts.cert.empty() || opts.key.empty()) {
            throw config_error("tls: 'cert=' and 'key=' go together; expected "
                               "'cert=<path>;key=<path>' or 'servername=<name>'");
        }
        std::vector<x509_ptr> certs = load_certificates(opts.cert);
        evp_pkey_ptr key = load_private_key(opts.key);
        use_certificate(ctx, certs, key, opts);
    } else if (!opts.servername.empty()) {
        certificate_and_key generated = make_self_signed(opts.servername);
        checked("self-signed certificate",
                [&] { return SSL_CTX_use_certificate(ctx, generated.cert.get()); });
        checked("self-signed key",
                [&] { return SSL_CTX_use_PrivateKey(ctx, generated.key.get()); });
    } else {
        throw config_error(
            "tls: missing certificate; expected 'cert=<path>;key=<path>' or 'servername=<name>'");
    }

    if (!opts.client_ca.empty()) {
        // Mutual TLS: a client without a certificate from these CAs fails the handshake.
        ERR_clear_error();
        STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(opts.client_ca.c_str());
        if (names == nullptr ||
            SSL_CTX_load_verify_locations(ctx, opts.client_ca.c_str(), nullptr) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            throw startup_error(file_error("client_ca", opts.client_ca,
                                           "holds no usable CA certificate", take_error()));
        }
        SSL_CTX_set_client_CA_list(ctx, names); // takes ownership
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
        // Resumed sessions carry the verified client: their id context must be set.
        static constexpr unsigned char sid_ctx[] = "kaminaris";
        checked("session id context",
                [&] { return SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1); });
    }

    if (!opts.ocsp.empty()) {
        auto der = std::make_unique<std::vector<unsigned char>>(read_file("ocsp", opts.ocsp));
        const unsigned char* p = der->data();
        error_code ec;
        ocsp_response_ptr parsed(call(
            ec, [&] { return d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der->size())); }));
        if (!parsed) {
            throw startup_error(file_error("ocsp", opts.ocsp, "is not a DER OCSP response", ec));
        }
        ocsp_ = std::move(der);
        SSL_CTX_set_tlsext_status_cb(ctx, on_ocsp_status);
        SSL_CTX_set_tlsext_status_arg(ctx, ocsp_.get());
    }

    // Session tickets with OpenSSL's per-process keys. With early data and anti-replay on,
    // OpenSSL issues TLS 1.3 tickets that are single-use entries of the server session cache,
    // so the cache stays on. Most entries are tickets that will never come back: a client
    // keeps up to session_cache::capacity (256) and resumes with the newest, and one that
    // exits leaves all of its own. OpenSSL's default of 20480 entries is about 22 MB of them
    // (1.1 KB each), kept for the tickets' two hours; default_session_cache_size bounds that.
    static constexpr unsigned char session_id_context[] = "kaminari";
    checked("session id context", [&] {
        return SSL_CTX_set_session_id_context(ctx, session_id_context,
                                              sizeof session_id_context - 1);
    });
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    set_session_cache_size(default_session_cache_size);
    set_max_early_data(default_max_early_data);
    // The callback's argument only says whether to take kaminari-mux: any non-null pointer.
    static const bool take_mux = true;
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn_select,
                               opts.mux_alpn ? const_cast<bool*>(&take_mux) : nullptr);
}

void server_context::set_max_early_data(std::uint32_t bytes) {
    checked("max early data", [&] { return SSL_CTX_set_max_early_data(ctx_.get(), bytes); });
}

void server_context::set_session_cache_size(std::size_t sessions) {
    SSL_CTX_sess_set_cache_size(ctx_.get(), static_cast<long>(sessions));
}

engine server_context::make_engine() const {
    return engine(ctx_.get(), role::server);
}

std::string spki_pin(X509* cert) {
    X509_PUBKEY* key = X509_get_X509_PUBKEY(cert);
    unsigned char* der = nullptr;
    const int n = key != nullptr ? i2d_X509_PUBKEY(key, &der) : -1;
    if (n <= 0) {
        return {};
    }
    unsigned char digest[32];
    unsigned int len = 0;
    const bool ok =
        EVP_Digest(der, static_cast<std::size_t>(n), digest, &len, EVP_sha256(), nullptr) == 1;
    OPENSSL_free(der);
    if (!ok) {
        return {};
    }
    unsigned char text[45];
    EVP_EncodeBlock(text, digest, 32);
    return std::string(reinterpret_cast<const char*>(text), 44);
}

} // namespace kaminari::tls

#include "kaminari/tls/engine.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>

#include <algorithm>
#include <climits>
#include <cstring>
#include <system_error>

namespace kaminari::tls {

namespace {

int clamp_int(std::size_t n) noexcept {
    return static_cast<int>(std::min<std::size_t>(n, INT_MAX));
}

// A failed handshake because of the peer's certificate says why, not just "certificate
// verify failed": the X509_V_ERR_* result is the error.
error_code ssl_failure(SSL* ssl, unsigned long err) noexcept {
    if (ERR_GET_LIB(err) == ERR_LIB_SSL && ERR_GET_REASON(err) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        long result = SSL_get_verify_result(ssl);
        if (result != X509_V_OK) {
            return make_verify_error(result);
        }
    }
    if (err == 0) {
        return boost::asio::ssl::error::unspecified_system_error;
    }
    return make_error(err);
}

} // namespace

engine::engine(SSL_CTX* ctx, role r, std::size_t buffer_size) {
    ERR_clear_error();
    ssl_.reset(SSL_new(ctx));
    if (!ssl_) {
        throw std::system_error(take_error(), "tls: SSL_new");
    }
    // Partial writes: one record per call, so a full BIO never holds half of a large write.
    SSL_set_mode(ssl_.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    BIO* int_bio = nullptr;
    BIO* ext_bio = nullptr;
    if (BIO_new_bio_pair(&int_bio, buffer_size, &ext_bio, buffer_size) != 1) {
        throw std::system_error(take_error(), "tls: BIO_new_bio_pair");
    }
    ext_bio_.reset(ext_bio);
    SSL_set_bio(ssl_.get(), int_bio, int_bio);
    if (r == role::client) {
        SSL_set_connect_state(ssl_.get());
    } else {
        SSL_set_accept_state(ssl_.get());
    }
}

engine::~engine() {
    if (ssl_ && SSL_is_init_finished(ssl_.get())) {
        SSL_set_shutdown(ssl_.get(), SSL_get_shutdown(ssl_.get()) | SSL_SENT_SHUTDOWN);
    }
}

template <class Op>
engine::want engine::perform(Op&& op, error_code& ec) {
    std::size_t pending_before = pending_output();
    ERR_clear_error();
    int result = op();
    int ssl_error = SSL_get_error(ssl_.get(), result);
    unsigned long err = ERR_get_error();
    ERR_clear_error();
    bool more_output = pending_output() > pending_before;

    if (ssl_error == SSL_ERROR_SSL || ssl_error == SSL_ERROR_SYSCALL) {
        ec = ssl_failure(ssl_.get(), err);
        return more_output ? want_output : want_nothing;
    }
    if (ssl_error == SSL_ERROR_WANT_WRITE) {
        ec = {};
        return want_output_and_retry;
    }
    if (more_output) {
        ec = {};
        return result > 0 ? want_output : want_output_and_retry;
    }
    if (ssl_error == SSL_ERROR_WANT_READ) {
        ec = {};
        return want_input_and_retry;
    }
    if (ssl_error == SSL_ERROR_ZERO_RETURN) {
        // The peer's close_notify: end of its stream.
        ec = boost::asio::error::eof;
        return want_nothing;
    }
    if (ssl_error == SSL_ERROR_NONE) {
        ec = {};
        return want_nothing;
    }
    ec = boost::asio::ssl::error::unexpected_result;
    return want_nothing;
}

engine::want engine::handshake(error_code& ec) {
    return perform([&] { return SSL_do_handshake(ssl_.get()); }, ec);
}

engine::want engine::shutdown(error_code& ec) {
    // One call only: it queues close_notify and returns 0 ("peer's not seen yet"), which is
    // success for a half-close. A second call would wait for the peer's close_notify.
    return perform(
        [&] {
            int r = SSL_shutdown(ssl_.get());
            return r == 0 ? 1 : r;
        },
        ec);
}

engine::want engine::write(std::span<const std::uint8_t> data, error_code& ec, std::size_t& n) {
    n = 0;
    if (data.empty()) {
        ec = {};
        return want_nothing;
    }
    return perform([&] { return SSL_write_ex(ssl_.get(), data.data(), data.size(), &n); }, ec);
}

engine::want engine::read(std::span<std::uint8_t> data, error_code& ec, std::size_t& n) {
    n = 0;
    return perform([&] { return SSL_read_ex(ssl_.get(), data.data(), data.size(), &n); }, ec);
}

engine::want engine::write_early_data(std::span<const std::uint8_t> data, error_code& ec,
                                      std::size_t& n) {
    n = 0;
    return perform([&] { return SSL_write_early_data(ssl_.get(), data.data(), data.size(), &n); },
                   ec);
}

engine::want engine::read_early_data(std::span<std::uint8_t> data, error_code& ec, std::size_t& n,
                                     bool& finished) {
    n = 0;
    finished = false;
    return perform(
        [&] {
            int r = SSL_read_early_data(ssl_.get(), data.data(), data.size(), &n);
            if (r == SSL_READ_EARLY_DATA_FINISH) {
                finished = true;
                return 1;
            }
            return r == SSL_READ_EARLY_DATA_SUCCESS ? 1 : 0;
        },
        ec);
}

std::size_t engine::early_data_limit() const noexcept {
    if (!early_data_enabled_ || !SSL_in_before(ssl_.get())) {
        return 0;
    }
    const SSL_SESSION* session = SSL_get0_session(ssl_.get());
    if (session == nullptr) {
        return 0;
    }
    return SSL_SESSION_get_max_early_data(session);
}

bool engine::early_data_accepted() const noexcept {
    return SSL_get_early_data_status(ssl_.get()) == SSL_EARLY_DATA_ACCEPTED;
}

bool engine::session_reused() const noexcept {
    return SSL_session_reused(ssl_.get()) == 1;
}

std::size_t engine::pending_output() const noexcept {
    return BIO_ctrl_pending(ext_bio_.get());
}

bool engine::has_buffered_input() const noexcept {
    return SSL_has_pending(ssl_.get()) != 0 || BIO_ctrl_pending(SSL_get_rbio(ssl_.get())) != 0;
}

std::size_t engine::get_output(std::span<std::uint8_t> buf) noexcept {
    int n = BIO_read(ext_bio_.get(), buf.data(), clamp_int(buf.size()));
    return n > 0 ? static_cast<std::size_t>(n) : 0;
}

std::size_t engine::put_input(std::span<const std::uint8_t> buf) noexcept {
    int n = BIO_write(ext_bio_.get(), buf.data(), clamp_int(buf.size()));
    return n > 0 ? static_cast<std::size_t>(n) : 0;
}

std::span<const std::uint8_t> engine::output() const noexcept {
    char* p = nullptr;
    int n = BIO_nread0(ext_bio_.get(), &p);
    if (n <= 0 || p == nullptr) {
        return {};
    }
    return {reinterpret_cast<const std::uint8_t*>(p), static_cast<std::size_t>(n)};
}

void engine::consume_output(std::size_t n) noexcept {
    char* p = nullptr;
    BIO_nread(ext_bio_.get(), &p, clamp_int(n));
}

std::span<std::uint8_t> engine::input_space() noexcept {
    char* p = nullptr;
    int n = BIO_nwrite0(ext_bio_.get(), &p);
    if (n <= 0 || p == nullptr) {
        return {};
    }
    return {reinterpret_cast<std::uint8_t*>(p), static_cast<std::size_t>(n)};
}

void engine::commit_input(std::size_t n) noexcept {
    char* p = nullptr;
    BIO_nwrite(ext_bio_.get(), &p, clamp_int(n));
}

} // namespace kaminari::tls

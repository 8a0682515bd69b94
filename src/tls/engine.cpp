#include "kaminari/tls/engine.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>

#include <algorithm>
#include <cstring>
#include <new>
#include <system_error>

namespace kaminari::tls {

namespace detail {

std::span<std::uint8_t> byte_queue::space(bool compact) noexcept {
    if (!buf_) {
        try {
            buf_ = net::borrow_buffer(capacity_);
        } catch (...) {
            return {}; // out of memory: reads as a full buffer (the BIO write fails)
        }
    }
    std::uint8_t* const p = buf_.span().data();
    if (compact && end_ == capacity_ && begin_ != 0) {
        std::memmove(p, p + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
    }
    return {p + end_, capacity_ - end_};
}

} // namespace detail

namespace {

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

// The engine's BIO: two byte queues (ciphertext in from the peer, out to it) that the SSL
// reads and writes, and the caller fills and drains in place. Unlike a BIO pair, whose two
// ring buffers are allocated with the pair and stay for the connection's life, a queue
// allocates its buffer on first use and gives it back once drained, so an idle connection
// holds none (tens of KiB per connection otherwise).
int queue_bio_write(BIO* bio, const char* data, int len) {
    BIO_clear_retry_flags(bio);
    auto* q = static_cast<detail::bio_queues*>(BIO_get_data(bio));
    auto space = q->out.space(false);
    if (len <= 0) {
        return 0;
    }
    if (space.empty()) {
        // Full (or out of memory): the SSL keeps the rest and reports SSL_ERROR_WANT_WRITE.
        BIO_set_retry_write(bio);
        return -1;
    }
    std::size_t n = std::min(space.size(), static_cast<std::size_t>(len));
    std::memcpy(space.data(), data, n);
    q->out.commit(n);
    return static_cast<int>(n);
}

int queue_bio_read(BIO* bio, char* data, int len) {
    BIO_clear_retry_flags(bio);
    auto* q = static_cast<detail::bio_queues*>(BIO_get_data(bio));
    auto in = q->in.data();
    if (len <= 0) {
        return 0;
    }
    if (in.empty()) {
        BIO_set_retry_read(bio); // SSL_ERROR_WANT_READ: the caller feeds more
        return -1;
    }
    std::size_t n = std::min(in.size(), static_cast<std::size_t>(len));
    std::memcpy(data, in.data(), n);
    q->in.consume(n);
    return static_cast<int>(n);
}

long queue_bio_ctrl(BIO* bio, int cmd, long, void*) {
    auto* q = static_cast<detail::bio_queues*>(BIO_get_data(bio));
    switch (cmd) {
    case BIO_CTRL_PENDING:
        return static_cast<long>(q->in.size());
    case BIO_CTRL_WPENDING:
        return static_cast<long>(q->out.size());
    case BIO_CTRL_FLUSH:
        return 1; // the caller sends the output; nothing is held back here
    default:
        return 0;
    }
}

int queue_bio_destroy(BIO* bio) {
    delete static_cast<detail::bio_queues*>(BIO_get_data(bio));
    BIO_set_data(bio, nullptr);
    return 1;
}

BIO_METHOD* make_queue_bio_method() {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "kaminari queues");
    if (m == nullptr || BIO_meth_set_write(m, queue_bio_write) != 1 ||
        BIO_meth_set_read(m, queue_bio_read) != 1 || BIO_meth_set_ctrl(m, queue_bio_ctrl) != 1 ||
        BIO_meth_set_destroy(m, queue_bio_destroy) != 1) {
        BIO_meth_free(m);
        return nullptr;
    }
    return m;
}

// One method for the process, created on first use (thread-safe static initialisation) and
// kept until exit. nullptr if OpenSSL could not allocate it; BIO_new then fails.
const BIO_METHOD* queue_bio_method() {
    static BIO_METHOD* const method = make_queue_bio_method();
    return method;
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
    BIO* bio = BIO_new(queue_bio_method());
    if (bio == nullptr) {
        throw std::system_error(take_error(), "tls: BIO_new");
    }
    queues_ = new (std::nothrow) detail::bio_queues(buffer_size);
    if (queues_ == nullptr) {
        BIO_free(bio);
        throw std::system_error(std::make_error_code(std::errc::not_enough_memory), "tls: BIO");
    }
    BIO_set_data(bio, queues_); // freed with the BIO, which the SSL owns from here on
    BIO_set_init(bio, 1);
    SSL_set_bio(ssl_.get(), bio, bio);
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
    SSL* ssl = ssl_.get();
    if (SSL_is_server(ssl) && !SSL_is_init_finished(ssl)) {
        // 0.5-RTT: SSL_write_ex would try to finish the handshake, which needs the client's
        // Finished; this writes with the server's application keys, which are ready.
        return perform([&] { return SSL_write_early_data(ssl, data.data(), data.size(), &n); }, ec);
    }
    return perform([&] { return SSL_write_ex(ssl, data.data(), data.size(), &n); }, ec);
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

bool engine::handshake_done() const noexcept {
    return SSL_is_init_finished(ssl_.get()) == 1;
}

bool engine::session_reused() const noexcept {
    return SSL_session_reused(ssl_.get()) == 1;
}

std::string_view engine::alpn() const noexcept {
    const unsigned char* p = nullptr;
    unsigned int n = 0;
    SSL_get0_alpn_selected(ssl_.get(), &p, &n);
    return p != nullptr ? std::string_view(reinterpret_cast<const char*>(p), n)
                        : std::string_view{};
}

std::size_t engine::pending_output() const noexcept {
    return queues_->out.size();
}

bool engine::has_buffered_input() const noexcept {
    return SSL_has_pending(ssl_.get()) != 0 || queues_->in.size() != 0;
}

std::size_t engine::get_output(std::span<std::uint8_t> buf) noexcept {
    auto out = output();
    std::size_t n = std::min(buf.size(), out.size());
    if (n != 0) {
        std::memcpy(buf.data(), out.data(), n);
        consume_output(n);
    }
    return n;
}

std::size_t engine::put_input(std::span<const std::uint8_t> buf) noexcept {
    auto space = input_space();
    std::size_t n = std::min(buf.size(), space.size());
    if (n != 0) {
        std::memcpy(space.data(), buf.data(), n);
        commit_input(n);
    }
    return n;
}

std::span<const std::uint8_t> engine::output() const noexcept {
    return queues_->out.data();
}

void engine::consume_output(std::size_t n) noexcept {
    queues_->out.consume(n);
    // Only the caller holds views of the output, and it has just consumed them.
    queues_->out.release_if_empty();
}

std::span<std::uint8_t> engine::input_space() noexcept {
    return queues_->in.space(true);
}

void engine::commit_input(std::size_t n) noexcept {
    queues_->in.commit(n);
}

void engine::release_idle_buffers() noexcept {
    queues_->in.release_if_empty();
    // OpenSSL's own record buffers: SSL_MODE_RELEASE_BUFFERS frees them after an application
    // data record, but an SSL_read that ends in a handshake message (a session ticket) or finds
    // no record keeps its 16 KiB+ read buffer. This refuses (and keeps them) while a record is
    // partly read or written.
    (void)SSL_free_buffers(ssl_.get());
}

bool engine::holds_buffers() const noexcept {
    return queues_->in.allocated() || queues_->out.allocated();
}

} // namespace kaminari::tls

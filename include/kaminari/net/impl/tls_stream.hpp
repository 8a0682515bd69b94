#pragma once

// Definitions of net::tls_stream; included at the bottom of <kaminari/net/tls_stream.hpp>.

#include <boost/asio/error.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>

namespace kaminari::net {

template <byte_stream Next>
tls_stream<Next>::tls_stream(Next next, tls::engine engine)
    : next_(std::move(next))
    , engine_(std::move(engine))
    , wake_(next_.get_executor(), asio::steady_timer::time_point::max()) {
}

template <byte_stream Next>
asio::awaitable<void> tls_stream<Next>::lock_write() {
    while (writing_) {
        waiting_ = true;
        co_await wake_.async_wait(use_tuple);
    }
    writing_ = true;
}

template <byte_stream Next>
void tls_stream<Next>::unlock_write() noexcept {
    writing_ = false;
    if (waiting_) {
        waiting_ = false;
        cancel_wake();
    }
}

template <byte_stream Next>
void tls_stream<Next>::cancel_wake() noexcept {
    try {
        wake_.cancel();
    } catch (...) {
        // Cancelling a timer cannot fail on any supported platform; stay noexcept regardless.
    }
}

template <byte_stream Next>
void tls_stream<Next>::discard_output() noexcept {
    while (std::size_t n = engine_.output().size()) {
        engine_.consume_output(n);
    }
}

template <byte_stream Next>
asio::awaitable<error_code> tls_stream<Next>::flush_locked() {
    if (write_error_) {
        co_return write_error_;
    }
    while (engine_.pending_output() != 0) {
        // A view into the engine's BIO buffer: output the read side appends meanwhile lands
        // after it, and only this loop consumes, so the view stays valid across the await.
        std::span<const std::uint8_t> out = engine_.output();
        auto [ec, n] = co_await next_.write(out, std::span<std::uint8_t>{});
        if (ec) {
            write_error_ = ec;
            co_return ec;
        }
        engine_.consume_output(out.size());
    }
    co_return error_code{};
}

template <byte_stream Next>
asio::awaitable<error_code> tls_stream<Next>::encrypt_locked(std::span<const std::uint8_t> data,
                                                             std::size_t& total) {
    while (!data.empty()) {
        error_code ec;
        std::size_t n = 0;
        auto want = engine_.write(data, ec, n);
        data = data.subspan(n);
        total += n;
        if (ec) {
            co_await flush_locked(); // best effort: the alert, if any
            co_return ec;
        }
        switch (want) {
        case tls::engine::want_output_and_retry:
            // The BIO is full: send it in one Next::write(), then the same bytes again.
            if (auto fec = co_await flush_locked()) {
                co_return fec;
            }
            break;
        case tls::engine::want_input_and_retry:
            // Renegotiation is disabled, so a write never needs the peer's bytes.
            co_return boost::asio::ssl::error::unexpected_result;
        default:
            break;
        }
    }
    co_return error_code{};
}

template <byte_stream Next>
asio::awaitable<error_code> tls_stream<Next>::write_locked(std::span<const std::uint8_t> data) {
    std::size_t total = 0;
    error_code ec = co_await encrypt_locked(data, total);
    if (!ec) {
        ec = co_await flush_locked();
    }
    co_return ec;
}

template <byte_stream Next>
asio::awaitable<error_code> tls_stream<Next>::fill() {
    std::span<std::uint8_t> space = engine_.input_space();
    // The engine never wants a record larger than its input buffer.
    if (space.empty()) {
        co_return asio::error::no_buffer_space;
    }
    auto [ec, n] = co_await next_.read_some(space);
    if (ec) {
        co_return ec;
    }
    // Only a consumer that empties the buffer can move its write position (to the start);
    // engine writes never read, but stay correct if one ever does.
    std::span<std::uint8_t> now = engine_.input_space();
    if (now.data() != space.data()) {
        if (now.size() < n) {
            co_return boost::asio::ssl::error::unexpected_result;
        }
        std::memmove(now.data(), space.data(), n);
    }
    engine_.commit_input(n);
    co_return error_code{};
}

template <byte_stream Next>
template <class Op>
asio::awaitable<error_code> tls_stream<Next>::drive(Op op, bool flush_when_done) {
    for (;;) {
        error_code ec;
        auto want = op(ec);
        const bool done = !ec && want != tls::engine::want_input_and_retry &&
                          want != tls::engine::want_output_and_retry;
        if (engine_.pending_output() != 0 && (flush_when_done || !done)) {
            error_code fec = co_await flush_locked();
            if (!ec) {
                ec = fec;
            }
        }
        if (ec) {
            co_return ec;
        }
        if (want == tls::engine::want_input_and_retry) {
            if (auto rec = co_await fill()) {
                co_return rec;
            }
        } else if (want != tls::engine::want_output_and_retry) {
            co_return error_code{};
        }
    }
}

template <byte_stream Next>
template <class More>
asio::awaitable<error_code>
tls_stream<Next>::handshake_client(std::span<const std::uint8_t> first_data, More more) {
    co_await lock_write();
    std::size_t sent_early = 0;
    error_code ec;
    std::size_t limit = engine_.early_data_limit();
    if (limit != 0 && !first_data.empty()) {
        auto chunk = first_data.first(std::min(limit, first_data.size()));
        ec = co_await drive([&](error_code& e) {
            std::size_t n = 0;
            auto want = engine_.write_early_data(chunk, e, n);
            sent_early += n;
            return want;
        });
    }
    if (!ec) {
        // What the completing step wrote (the client's Finished, unless the server's came
        // last as in a full TLS 1.2 handshake) stays in the output buffer, so the bytes behind
        // it go in the same Next::write().
        ec = co_await drive([&](error_code& e) { return engine_.handshake(e); }, false);
    }
    if (!ec) {
        // Rejected early data was dropped by the server: send it all again, once.
        std::size_t skip = engine_.early_data_accepted() ? sent_early : 0;
        std::size_t total = 0;
        ec = co_await encrypt_locked(first_data.subspan(skip), total);
        if (!ec) {
            const std::span<const std::uint8_t> behind = more();
            ec = co_await encrypt_locked(behind, total);
        }
        if (!ec) {
            ec = co_await flush_locked();
        }
    }
    unlock_write();
    co_return ec;
}

template <byte_stream Next>
template <class OnFlight>
asio::awaitable<error_code> tls_stream<Next>::handshake_server(OnFlight on_flight) {
    co_await lock_write();
    std::array<std::uint8_t, 4096> chunk;
    error_code ec;
    bool finished = false;
    bool sent = false; // the server's flight (or part of it) is out
    bool told = false;
    // The client's next flight is awaited once something went out and the handshake is not done.
    const auto flight_out = [&] {
        if (sent && !told && !engine_.handshake_done()) {
            told = true;
            on_flight();
        }
    };
    while (!ec && !finished) {
        std::size_t n = 0;
        auto want = engine_.read_early_data(chunk, ec, n, finished);
        early_.insert(early_.end(), chunk.begin(), chunk.begin() + n);
        if (engine_.pending_output() != 0) {
            error_code fec = co_await flush_locked();
            if (!ec) {
                ec = fec;
            }
            sent = true;
        }
        if (!ec && !finished && engine_.early_data_accepted()) {
            // Early data accepted and the server's flight (up to its Finished) is out: the
            // stream is usable now, one round trip before the client's Finished arrives. Reads
            // take the early data, then finish the handshake; writes are 0.5-RTT data.
            early_reading_ = true;
            flight_out();
            break;
        }
        if (!ec && !finished && want == tls::engine::want_input_and_retry) {
            flight_out();
            ec = co_await fill();
        }
    }
    if (!ec && !early_reading_) {
        flight_out();
        ec = co_await drive([&](error_code& e) { return engine_.handshake(e); });
    }
    unlock_write();
    co_return ec;
}

template <byte_stream Next>
tls::engine::want tls_stream<Next>::decrypt(std::span<std::uint8_t> buf, error_code& ec,
                                            std::size_t& n) {
    if (!early_reading_) {
        return engine_.read(buf, ec, n);
    }
    bool finished = false;
    auto want = engine_.read_early_data(buf, ec, n, finished);
    if (finished) {
        // EndOfEarlyData: from here SSL_read, which reads the client's Finished first.
        early_reading_ = false;
        if (!ec && want == tls::engine::want_nothing) {
            return engine_.read(buf, ec, n);
        }
    }
    return want;
}

template <byte_stream Next>
asio::awaitable<void> tls_stream<Next>::flush_from_reader() {
    if (writing_) {
        co_return; // a running write's flush loop sends it
    }
    const bool close_now = shutdown_deferred_ && engine_.handshake_done();
    if (engine_.pending_output() == 0 && !close_now) {
        co_return;
    }
    if (write_shut_ && !shutdown_deferred_) {
        // close_notify and FIN are out: nothing may follow them.
        discard_output();
        co_return;
    }
    writing_ = true;
    if (close_now) {
        // The close_notify held back until the handshake completed, after what it produced
        // (the session tickets).
        shutdown_deferred_ = false;
        error_code ec;
        engine_.shutdown(ec);
    }
    co_await flush_locked();
    unlock_write();
}

template <byte_stream Next>
asio::awaitable<io_result> tls_stream<Next>::read_some(std::span<std::uint8_t> buf) {
    if (buf.empty()) {
        co_return io_result{};
    }
    if (early_pos_ < early_.size()) {
        std::size_t n = std::min(buf.size(), early_.size() - early_pos_);
        std::memcpy(buf.data(), early_.data() + early_pos_, n);
        early_pos_ += n;
        if (early_pos_ == early_.size()) {
            std::vector<std::uint8_t>().swap(early_);
            early_pos_ = 0;
        }
        co_return io_result{{}, n};
    }
    if (deferred_ec_) {
        if (deferred_ec_ == asio::error::eof) {
            read_eof_ = true;
        }
        co_return io_result{std::exchange(deferred_ec_, error_code{}), 0};
    }
    if (read_eof_) {
        co_return io_result{asio::error::eof, 0};
    }
    for (;;) {
        error_code ec;
        std::size_t n = 0;
        auto want = decrypt(buf, ec, n);
        // Output made by the read (KeyUpdate answer, session tickets, alert): a running write's
        // flush loop sends it; otherwise send it now under the flag. A failure here surfaces on
        // the write side.
        co_await flush_from_reader();
        if (ec == asio::error::eof) {
            read_eof_ = true;
            co_return io_result{ec, 0};
        }
        if (ec) {
            co_return io_result{ec, 0};
        }
        if (n != 0) {
            // SSL_read gives one record (<= 16 KiB) per call: take every record already here,
            // without more I/O, so the relay moves big chunks. An error or end of stream
            // found on the way is kept and reported by the next call (and wait_readable()).
            // Only while ciphertext is here: an SSL_read that finds none would take a new
            // 16 KiB record buffer and keep it while the connection idles.
            while (!early_reading_ && n < buf.size() && engine_.has_buffered_input()) {
                error_code more_ec;
                std::size_t more = 0;
                engine_.read(buf.subspan(n), more_ec, more);
                if (more_ec) {
                    deferred_ec_ = more_ec;
                    break;
                }
                if (more == 0) {
                    break;
                }
                n += more;
            }
            co_return io_result{{}, n};
        }
        if (want == tls::engine::want_input_and_retry) {
            if (auto rec = co_await fill()) {
                // The next layer ended without close_notify: the end of the stream all the same.
                if (rec == asio::error::eof) {
                    read_eof_ = true;
                }
                co_return io_result{rec, 0};
            }
        } else if (want == tls::engine::want_output_and_retry) {
            // The output buffer is full: wait for the running write to drain it.
            co_await lock_write();
            error_code fec = write_shut_ && !shutdown_deferred_ ? (discard_output(), error_code{})
                                                                : co_await flush_locked();
            unlock_write();
            if (fec) {
                co_return io_result{fec, 0};
            }
        }
    }
}

template <byte_stream Next>
asio::awaitable<io_result> tls_stream<Next>::write(std::span<const std::uint8_t> head,
                                                   std::span<std::uint8_t> body) {
    co_await lock_write();
    if (write_shut_) {
        unlock_write();
        co_return io_result{asio::error::shut_down, 0};
    }
    std::size_t total = 0;
    error_code ec = co_await encrypt_locked(head, total);
    if (!ec) {
        ec = co_await encrypt_locked(body, total);
    }
    if (!ec) {
        ec = co_await flush_locked();
    }
    unlock_write();
    co_return io_result{ec, total};
}

template <byte_stream Next>
asio::awaitable<error_code> tls_stream<Next>::shutdown_send() {
    co_await lock_write();
    if (write_shut_) {
        unlock_write();
        co_return error_code{};
    }
    write_shut_ = true;
    if (!engine_.handshake_done()) {
        // 0.5-RTT: TLS has no close_notify before the handshake completes. The reader sends it
        // once the client's Finished is in (flush_from_reader()).
        shutdown_deferred_ = true;
        unlock_write();
        co_return error_code{};
    }
    error_code ec;
    engine_.shutdown(ec);
    error_code fec = co_await flush_locked();
    if (!ec) {
        ec = fec;
    }
    unlock_write();
    co_return ec;
}

template <byte_stream Next>
void tls_stream<Next>::close() noexcept {
    next_.close();
    cancel_wake();
}

} // namespace kaminari::net

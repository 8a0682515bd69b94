#include "kaminari/net/udp_server.hpp"

#include <kaminari/log.hpp>
#include <kaminari/net/dial.hpp>
#include <kaminari/net/relay.hpp>
#include <kaminari/net/timeout.hpp>
#include <kaminari/net/udp.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

namespace kaminari::net {

namespace {

using udp = asio::ip::udp;
using clock = std::chrono::steady_clock;

// One association on kaminaris: the stream from kaminaric and the UDP socket to the remote.
template <byte_stream S>
class server_association {
public:
    server_association(S& s, std::uint64_t id, const server_config& cfg, udp::socket sock)
        : s_(s)
        , id_(id)
        , cfg_(cfg)
        , sock_(std::move(sock))
        , timer_(s.get_executor())
        , last_(clock::now()) {}

    asio::awaitable<void> run(udp_frame_reader& reader) {
        using namespace asio::experimental::awaitable_operators;
        co_await (up(reader) && down() && watch());
        if (log::enabled(log::level::debug)) {
            log::debug("#{} udp association closed ({}): {} datagrams up, {} down, {} dropped", id_,
                       why_, up_, down_, dropped_);
        }
    }

private:
    void stop(const char* why) noexcept {
        if (stopped_) {
            return;
        }
        stopped_ = true;
        why_ = why;
        s_.close();
        error_code ignored;
        sock_.close(ignored);
        timer_.cancel();
    }

    // Stream -> remote: each datagram goes out at once; one the socket cannot take now is
    // dropped (the kernel's send buffer is the only queue).
    asio::awaitable<void> up(udp_frame_reader& reader) {
        for (;;) {
            auto r = co_await reader.next(s_);
            if (r.end == udp_read_end::too_large) {
                log::info("#{} udp: a length prefix claims more than {} bytes; closing", id_,
                          codec::max_udp_datagram);
                stop("datagram too large");
                co_return;
            }
            if (r.end == udp_read_end::truncated) {
                log::info("#{} udp: the stream ended inside a datagram; closing", id_);
                stop("truncated datagram");
                co_return;
            }
            if (r.end != udp_read_end::none) {
                stop("client closed");
                co_return;
            }
            last_ = clock::now();
            ++up_;
            error_code ec;
            sock_.send(asio::buffer(r.datagram.data(), r.datagram.size()), 0, ec);
            if (ec) {
                ++dropped_;
                log::debug("#{} udp: datagram of {} bytes dropped ({}); {} dropped so far", id_,
                           r.datagram.size(), ec.message(), dropped_);
            }
        }
    }

    // Remote -> stream. While a write waits for a slow tunnel, replies wait in the socket's
    // receive buffer, and the kernel drops what does not fit.
    asio::awaitable<void> down() {
        std::vector<std::uint8_t> buf(codec::max_udp_datagram);
        for (;;) {
            auto [ec, n] = co_await sock_.async_receive(asio::buffer(buf), use_tuple);
            if (stopped_) {
                co_return;
            }
            if (ec == asio::error::connection_refused) {
                continue; // an ICMP port unreachable for an earlier datagram: the remote is not up
            }
            if (ec) {
                log::debug("#{} udp: receive from the remote failed: {}", id_, ec.message());
                stop("remote socket failed");
                co_return;
            }
            last_ = clock::now();
            ++down_;
            std::array<std::uint8_t, codec::udp_header_size> head{};
            codec::encode_udp_header(n, head);
            auto w = co_await s_.write(head, std::span(buf).first(n));
            if (w.ec) {
                stop("client gone");
                co_return;
            }
        }
    }

    asio::awaitable<void> watch() {
        const auto limit = cfg_.opts.common.udp_timeout;
        const auto tick = std::clamp<clock::duration>(limit / 4, std::chrono::milliseconds(50),
                                                      std::chrono::seconds(5));
        while (!stopped_) {
            timer_.expires_after(tick);
            co_await timer_.async_wait(use_tuple);
            if (stopped_) {
                co_return;
            }
            if (clock::now() - last_ >= limit) {
                stop("idle");
                co_return;
            }
        }
    }

    S& s_;
    std::uint64_t id_;
    const server_config& cfg_;
    udp::socket sock_;
    asio::steady_timer timer_;
    clock::time_point last_;
    bool stopped_ = false;
    const char* why_ = "";
    std::uint64_t up_ = 0;
    std::uint64_t down_ = 0;
    std::uint64_t dropped_ = 0;
};

// Holds one of the process's association slots for as long as it lives.
struct association_slot {
    association_slot() = default;
    association_slot(const association_slot&) = delete;
    association_slot& operator=(const association_slot&) = delete;
    ~association_slot() {
        if (held) {
            release_udp_association();
        }
    }
    bool held = false;
};

template <byte_stream S>
asio::awaitable<void> serve(S& s, std::uint64_t id, const server_config& cfg,
                            udp_frame_reader& reader) {
    if (!cfg.opts.common.udp) {
        log::info("#{} asks for a UDP association, but 'udp' is not set; closing", id);
        s.close();
        co_return;
    }
    association_slot slot;
    slot.held = claim_udp_association();
    if (!slot.held) {
        s.close();
        co_return;
    }
    const auto exec = s.get_executor();
    udp::resolver resolver(exec);
    auto [rec, results] =
        co_await resolver.async_resolve(cfg.remote.host, std::to_string(cfg.remote.port),
                                        udp::resolver::numeric_service, use_tuple);
    if (rec || results.empty()) {
        log::warn("#{} udp: cannot resolve {}: {}", id, cfg.remote.to_string(),
                  rec ? rec.message() : std::string("no address"));
        s.close();
        co_return;
    }
    const udp::endpoint target = results.begin()->endpoint();
    udp::socket sock(exec);
    error_code ec;
    sock.open(target.protocol(), ec);
    if (!ec) {
        tune_udp_socket(sock);
        sock.connect(target, ec);
    }
    if (!ec) {
        sock.non_blocking(true, ec);
    }
    if (ec) {
        log::warn("#{} udp: socket to {} failed: {}", id, to_string(target), ec.message());
        s.close();
        co_return;
    }
    log::debug("#{} udp association to {} ({} open)", id, to_string(target), udp_associations());
    server_association<S> a(s, id, cfg, std::move(sock));
    co_await a.run(reader);
}

} // namespace

asio::awaitable<void> serve_udp_association(ws_stream<tcp_stream>& s, std::uint64_t id,
                                            const server_config& cfg) {
    udp_frame_reader reader;
    co_await serve(s, id, cfg, reader);
}

asio::awaitable<void> serve_udp_association(ws_stream<tls_stream<tcp_stream>>& s, std::uint64_t id,
                                            const server_config& cfg) {
    udp_frame_reader reader;
    co_await serve(s, id, cfg, reader);
}

asio::awaitable<void> serve_udp_association(tls_stream<tcp_stream>& s, std::uint64_t id,
                                            const server_config& cfg) {
    udp_frame_reader reader;
    co_await serve(s, id, cfg, reader);
}

asio::awaitable<void> serve_tls_udp_or_tcp(tls_stream<tcp_stream>& s, std::uint64_t id,
                                           const server_config& cfg) {
    constexpr std::size_t marker_size = codec::udp_stream_marker.size();
    std::vector<std::uint8_t> first(16 * 1024);
    std::size_t have = 0;
    bool waited_out = false;
    {
        const deadline limit(s.get_executor(), udp_marker_wait, [&s]() noexcept {
            error_code ignored;
            bottom_socket(s).cancel(ignored);
        });
        auto wec = co_await s.wait_readable();
        waited_out = limit.expired();
        if (wec && !waited_out) {
            s.close();
            co_return;
        }
    }
    // Bytes are there: read what came, more only while it can still be the marker. Nothing
    // within the wait: a TCP app that waits for the server to speak first.
    while (!waited_out && have < marker_size) {
        auto [ec, n] = co_await s.read_some(std::span(first).subspan(have));
        if (ec) {
            if (ec != asio::error::eof || have == 0) {
                s.close();
                co_return;
            }
            break;
        }
        have += n;
        if (!std::equal(first.begin(),
                        first.begin() + static_cast<std::ptrdiff_t>(std::min(have, marker_size)),
                        codec::udp_stream_marker.begin())) {
            break;
        }
    }
    if (have >= marker_size && std::equal(codec::udp_stream_marker.begin(),
                                          codec::udp_stream_marker.end(), first.begin())) {
        udp_frame_reader reader;
        reader.preload(std::span(first).subspan(marker_size, have - marker_size));
        std::vector<std::uint8_t>().swap(first);
        co_await serve(s, id, cfg, reader);
        co_return;
    }
    // A TCP connection: the remote gets the bytes read, then the relay as for any other.
    auto [dec, up_socket] = co_await connect_remote(cfg.remote, cfg.opts.common.connect_timeout);
    if (dec) {
        log::warn("#{} connect to {} failed: {}", id, cfg.remote.to_string(), dec.message());
        s.close();
        co_return;
    }
    tcp_stream up(std::move(up_socket));
    if (have != 0) {
        if (auto w = co_await write_all(up, std::span(first).first(have)); w.ec) {
            s.close();
            up.close();
            co_return;
        }
    }
    std::vector<std::uint8_t>().swap(first);
    auto r = co_await relay(s, up, cfg.opts.common.idle_timeout);
    if (log::enabled(log::level::debug)) {
        log::debug("#{} closed: {} bytes up, {} bytes down", id, r.a_to_b.bytes + have,
                   r.b_to_a.bytes);
    }
}

} // namespace kaminari::net

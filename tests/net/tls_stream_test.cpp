#include "kaminari/net/tls_stream.hpp"

#include "support/mem_stream.hpp"
#include "tls/test_pki.hpp"

#include <kaminari/tls/context.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <string>
#include <vector>

namespace kaminari::net {
namespace {

using namespace boost::asio::experimental::awaitable_operators;
using test::mem_stream;
using test::shared_pki;
using stream = tls_stream<mem_stream>;

// ASSERT_* returns, which a coroutine cannot: fail and co_return instead.
#define CO_ASSERT_OK(ec)                                                                           \
    do {                                                                                           \
        if (ec) {                                                                                  \
            ADD_FAILURE() << #ec << ": " << (ec).message();                                        \
            co_return;                                                                             \
        }                                                                                          \
    } while (0)

tls_client_options client_opts(bool early_data = false) {
    tls_client_options o;
    o.sni = "test.example";
    o.alpn = {"http/1.1"};
    o.early_data = early_data;
    return o;
}

tls_server_options server_opts() {
    tls_server_options o;
    o.cert = shared_pki().ec_chain_pem;
    o.key = shared_pki().ec_key_pem;
    return o;
}

std::span<const std::uint8_t> bytes(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::vector<std::uint8_t> pattern(std::size_t n, std::uint32_t seed) {
    std::vector<std::uint8_t> v(n);
    std::uint32_t x = seed;
    for (auto& b : v) {
        x = x * 1664525u + 1013904223u;
        b = static_cast<std::uint8_t>(x >> 24);
    }
    return v;
}

// Writes `data` in chunks of `chunk` bytes (the relay's buffer size).
asio::awaitable<error_code> write_all_of(stream& s, std::vector<std::uint8_t> data,
                                         std::size_t chunk, bool key_updates = false) {
    for (std::size_t off = 0; off < data.size(); off += chunk) {
        if (key_updates && off % (256 * 1024) == 0) {
            SSL_key_update(s.engine().native_handle(), SSL_KEY_UPDATE_REQUESTED);
        }
        auto part = std::span<std::uint8_t>(data).subspan(off, std::min(chunk, data.size() - off));
        auto [ec, n] = co_await s.write({}, part);
        if (ec) {
            co_return ec;
        }
        EXPECT_EQ(n, part.size());
    }
    co_return error_code{};
}

// Reads until end of stream; returns everything read and the error that ended it.
asio::awaitable<std::pair<std::vector<std::uint8_t>, error_code>> read_to_end(stream& s) {
    std::vector<std::uint8_t> out;
    std::vector<std::uint8_t> buf(8192);
    for (;;) {
        auto [ec, n] = co_await s.read_some(buf);
        if (ec) {
            co_return std::pair{std::move(out), ec};
        }
        out.insert(out.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    }
}

asio::awaitable<std::string> read_exactly(stream& s, std::size_t n) {
    std::string out;
    std::array<std::uint8_t, 4096> buf;
    while (out.size() < n) {
        auto [ec, got] =
            co_await s.read_some(std::span(buf).first(std::min(buf.size(), n - out.size())));
        if (ec) {
            ADD_FAILURE() << "read: " << ec.message();
            co_return out;
        }
        out.append(reinterpret_cast<const char*>(buf.data()), got);
    }
    co_return out;
}

struct pair_of_streams {
    stream client;
    stream server;
};

pair_of_streams make_streams(asio::io_context& ctx, const tls::client_context& cctx,
                             const tls::server_context& sctx) {
    auto [a, b] = mem_stream::make_pair(ctx.get_executor());
    return {stream(std::move(a), cctx.make_engine()), stream(std::move(b), sctx.make_engine())};
}

// Both handshakes at once; the client's first bytes go with its handshake.
asio::awaitable<std::pair<error_code, error_code>> handshake(pair_of_streams& p,
                                                             std::string_view first) {
    auto [c, s] = co_await (p.client.handshake_client(bytes(first)) && p.server.handshake_server());
    co_return std::pair{c, s};
}

TEST(TlsStream, HandshakeDeliversFirstDataAndEchoes) {
    test::trust_only(shared_pki().ca_pem);
    tls::client_context cctx(client_opts());
    tls::server_context sctx(server_opts());
    asio::io_context ctx;
    test::run(ctx, [&]() -> asio::awaitable<void> {
        auto p = make_streams(ctx, cctx, sctx);
        auto [c, s] = co_await handshake(p, "hello");
        CO_ASSERT_OK(c);
        CO_ASSERT_OK(s);
        EXPECT_EQ(co_await read_exactly(p.server, 5), "hello");
        std::string reply = "world!";
        auto [ec, n] = co_await p.server.write(
            bytes("wor"),
            std::span<std::uint8_t>(reinterpret_cast<std::uint8_t*>(reply.data() + 3), 3));
        EXPECT_FALSE(ec);
        EXPECT_EQ(n, 6u);
        EXPECT_EQ(co_await read_exactly(p.client, 6), "world!");
        EXPECT_FALSE(p.client.engine().early_data_accepted());
    }());
}

void bulk_both_ways(std::size_t read_cap, std::size_t write_cap, std::size_t size,
                    bool key_updates) {
    test::trust_only(shared_pki().ca_pem);
    tls::client_context cctx(client_opts());
    tls::server_context sctx(server_opts());
    asio::io_context ctx;
    test::run(ctx, [&]() -> asio::awaitable<void> {
        auto p = make_streams(ctx, cctx, sctx);
        p.client.next_layer().read_size(read_cap);
        p.server.next_layer().write_size(write_cap);
        auto [c, s] = co_await handshake(p, "");
        CO_ASSERT_OK(c);
        CO_ASSERT_OK(s);
        auto up = pattern(size, 1);
        auto down = pattern(size, 2);
        // Each side writes its pattern in chunks, half-closes, and reads the other's to the end.
        auto side = [&](auto& stream, const std::vector<std::uint8_t>& send, std::size_t chunk,
                        const std::vector<std::uint8_t>& expect,
                        const char* name) -> asio::awaitable<void> {
            auto [w, r] = co_await ([&]() -> asio::awaitable<error_code> {
                auto ec = co_await write_all_of(stream, send, chunk, key_updates);
                if (!ec) {
                    ec = co_await stream.shutdown_send();
                }
                co_return ec;
            }() && read_to_end(stream));
            EXPECT_FALSE(w) << w.message();
            EXPECT_EQ(r.second, asio::error::eof);
            EXPECT_TRUE(r.first == expect) << name << " received " << r.first.size();
        };
        co_await (side(p.client, up, 8192, down, "client") &&
                  side(p.server, down, 16384, up, "server"));
    }());
}

TEST(TlsStream, FourMiBEachWayConcurrently) {
    bulk_both_ways(0, 0, 4 << 20, false);
}

TEST(TlsStream, BulkWithSmallTransportPiecesAndKeyUpdates) {
    bulk_both_ways(1000, 777, 1 << 20, true);
}

TEST(TlsStream, HalfCloseThenPeerWritesBack) {
    test::trust_only(shared_pki().ca_pem);
    tls::client_context cctx(client_opts());
    tls::server_context sctx(server_opts());
    asio::io_context ctx;
    test::run(ctx, [&]() -> asio::awaitable<void> {
        auto p = make_streams(ctx, cctx, sctx);
        auto [c, s] = co_await handshake(p, "request");
        CO_ASSERT_OK(c);
        CO_ASSERT_OK(s);
        EXPECT_FALSE(co_await p.client.shutdown_send());
        EXPECT_FALSE(co_await p.client.shutdown_send()); // idempotent
        auto [got, end] = co_await read_to_end(p.server);
        EXPECT_EQ(end, asio::error::eof);
        EXPECT_EQ(std::string(got.begin(), got.end()), "request");
        // The server still writes; the client still reads.
        std::string reply = "response";
        auto [ec, n] = co_await p.server.write(bytes(reply), {});
        EXPECT_FALSE(ec) << ec.message();
        EXPECT_EQ(co_await read_exactly(p.client, reply.size()), reply);
        // The client can no longer write.
        auto [wec, wn] = co_await p.client.write(bytes("late"), {});
        EXPECT_EQ(wec, asio::error::shut_down);
        EXPECT_FALSE(co_await p.server.shutdown_send());
        auto [rest, cend] = co_await read_to_end(p.client);
        EXPECT_TRUE(rest.empty());
        EXPECT_EQ(cend, asio::error::eof);
        // EOF is sticky.
        std::array<std::uint8_t, 4> buf;
        EXPECT_EQ((co_await p.client.read_some(buf)).ec, asio::error::eof);
    }());
}

// A transport that never reports readability on its own and sends no FIN: whatever a TLS
// layer above it already holds (records, a close_notify) it must find without the transport.
class no_fin_stream {
public:
    using executor_type = asio::any_io_executor;
    explicit no_fin_stream(mem_stream inner)
        : inner_(std::move(inner)) {}
    executor_type get_executor() const noexcept { return inner_.get_executor(); }
    asio::awaitable<io_result> read_some(std::span<std::uint8_t> buf) {
        return inner_.read_some(buf);
    }
    asio::awaitable<io_result> write(std::span<const std::uint8_t> head,
                                     std::span<std::uint8_t> body) {
        return inner_.write(head, body);
    }
    asio::awaitable<error_code> shutdown_send() { co_return error_code{}; }
    void close() noexcept { inner_.close(); }
    asio::awaitable<error_code> wait_readable() {
        asio::steady_timer never(inner_.get_executor(), std::chrono::seconds(5));
        co_await never.async_wait(use_tuple);
        co_return asio::error::timed_out;
    }

private:
    mem_stream inner_;
};

TEST(TlsStream, CloseNotifyReadWithDataIsNotLost) {
    test::trust_only(shared_pki().ca_pem);
    tls::client_context cctx(client_opts());
    tls::server_context sctx(server_opts());
    asio::io_context ctx;
    test::run(ctx, [&]() -> asio::awaitable<void> {
        auto [a, b] = mem_stream::make_pair(ctx.get_executor());
        tls_stream<no_fin_stream> client(no_fin_stream(std::move(a)), cctx.make_engine());
        tls_stream<no_fin_stream> server(no_fin_stream(std::move(b)), sctx.make_engine());
        auto [c, s] = co_await (client.handshake_client({}) && server.handshake_server());
        CO_ASSERT_OK(c);
        CO_ASSERT_OK(s);
        std::string x = "x";
        EXPECT_FALSE((co_await client.write(bytes(x), {})).ec);
        EXPECT_FALSE(co_await client.shutdown_send()); // close_notify right behind the data
        std::vector<std::uint8_t> buf(64 * 1024);
        auto r = co_await server.read_some(buf);
        EXPECT_FALSE(r.ec);
        EXPECT_EQ(r.n, 1u);
        // The close_notify may already be decrypted: the stream must say it is readable (to
        // report the end) without waiting for the transport, which never wakes up here.
        EXPECT_FALSE(co_await server.wait_readable());
        std::array<std::uint8_t, 4> small;
        EXPECT_EQ((co_await server.read_some(small)).ec, asio::error::eof);
    }());
}

TEST(TlsStream, TransportEofWithoutCloseNotifyIsEof) {
    test::trust_only(shared_pki().ca_pem);
    tls::client_context cctx(client_opts());
    tls::server_context sctx(server_opts());
    asio::io_context ctx;
    test::run(ctx, [&]() -> asio::awaitable<void> {
        auto p = make_streams(ctx, cctx, sctx);
        auto [c, s] = co_await handshake(p, "abc");
        CO_ASSERT_OK(c);
        co_await p.client.next_layer().shutdown_send(); // TCP FIN, no close_notify
        auto [got, end] = co_await read_to_end(p.server);
        EXPECT_EQ(end, asio::error::eof);
        EXPECT_EQ(std::string(got.begin(), got.end()), "abc");
    }());
}

TEST(TlsStream, UntrustedCertificateFailsWithReason) {
    test::trust_only(shared_pki().other_ca_pem);
    tls::client_context cctx(client_opts());
    tls::server_context sctx(server_opts());
    asio::io_context ctx;
    test::run(ctx, [&]() -> asio::awaitable<void> {
        auto p = make_streams(ctx, cctx, sctx);
        auto [c, s] = co_await handshake(p, "never sent");
        EXPECT_EQ(c.message(), "certificate verify failed: unable to get local issuer certificate");
        EXPECT_TRUE(s); // the client's alert
    }());
}

TEST(TlsStream, WrongNameFailsWithReason) {
    test::trust_only(shared_pki().ca_pem);
    auto co = client_opts();
    co.sni = "other.example";
    tls::client_context cctx(co);
    tls::server_context sctx(server_opts());
    asio::io_context ctx;
    test::run(ctx, [&]() -> asio::awaitable<void> {
        auto p = make_streams(ctx, cctx, sctx);
        auto [c, s] = co_await handshake(p, "");
        EXPECT_EQ(c.message(), "certificate verify failed: hostname mismatch");
    }());
}

// Connects once so the client caches tickets (read by the client after the handshake).
asio::awaitable<void> prime_session(asio::io_context& ctx, const tls::client_context& cctx,
                                    const tls::server_context& sctx) {
    auto p = make_streams(ctx, cctx, sctx);
    auto [c, s] = co_await handshake(p, "x");
    EXPECT_FALSE(c) << c.message();
    EXPECT_EQ(co_await read_exactly(p.server, 1), "x");
    co_await p.server.write(bytes("y"), {});
    EXPECT_EQ(co_await read_exactly(p.client, 1), "y");
    co_await p.client.shutdown_send();
    co_await p.server.shutdown_send();
    co_await read_to_end(p.server);
    co_await read_to_end(p.client);
}

// The second connection's first bytes arrive exactly once, whatever happened to early data.
void first_bytes_exactly_once(const tls::client_context& cctx, const tls::server_context& first,
                              const tls::server_context& second, std::size_t size,
                              bool expect_early) {
    asio::io_context ctx;
    test::run(ctx, [&]() -> asio::awaitable<void> {
        co_await prime_session(ctx, cctx, first);
        EXPECT_GT(cctx.sessions().size(), 0u);
        auto p = make_streams(ctx, cctx, second);
        EXPECT_GT(p.client.engine().early_data_limit(), 0u);
        auto data = pattern(size, 7);
        std::string_view first_data(reinterpret_cast<const char*>(data.data()), data.size());
        auto [c, s] = co_await handshake(p, first_data);
        CO_ASSERT_OK(c);
        CO_ASSERT_OK(s);
        EXPECT_EQ(p.client.engine().early_data_accepted(), expect_early);
        EXPECT_EQ(p.server.engine().early_data_accepted(), expect_early);
        EXPECT_EQ(p.client.engine().session_reused(), expect_early);
        co_await p.client.shutdown_send();
        auto [got, end] = co_await read_to_end(p.server);
        EXPECT_EQ(end, asio::error::eof);
        EXPECT_TRUE(got == data) << "server got " << got.size() << " of " << data.size();
        // And the connection works both ways afterwards.
        co_await p.server.write(bytes("ok"), {});
        EXPECT_EQ(co_await read_exactly(p.client, 2), "ok");
    }());
}

TEST(TlsStream, EarlyDataAcceptedDeliversFirstBytesOnce) {
    test::trust_only(shared_pki().ca_pem);
    tls::client_context cctx(client_opts(true));
    tls::server_context sctx(server_opts());
    first_bytes_exactly_once(cctx, sctx, sctx, 1000, true);
}

TEST(TlsStream, EarlyDataLargerThanLimitSendsTheRestAfterHandshake) {
    test::trust_only(shared_pki().ca_pem);
    tls::client_context cctx(client_opts(true));
    tls::server_context sctx(server_opts());
    first_bytes_exactly_once(cctx, sctx, sctx, 40000, true);
}

TEST(TlsStream, EarlyDataRejectedIsResentOnce) {
    test::trust_only(shared_pki().ca_pem);
    tls::client_context cctx(client_opts(true));
    tls::server_context first(server_opts());
    tls::server_context second(server_opts());
    second.set_max_early_data(0);
    first_bytes_exactly_once(cctx, first, second, 3000, false);
}

TEST(TlsStream, WithoutZeroRttOptionFirstBytesGoAfterHandshake) {
    test::trust_only(shared_pki().ca_pem);
    tls::client_context cctx(client_opts(false));
    tls::server_context sctx(server_opts());
    asio::io_context ctx;
    test::run(ctx, [&]() -> asio::awaitable<void> {
        co_await prime_session(ctx, cctx, sctx);
        auto p = make_streams(ctx, cctx, sctx);
        EXPECT_EQ(p.client.engine().early_data_limit(), 0u);
        auto [c, s] = co_await handshake(p, "plain");
        CO_ASSERT_OK(c);
        EXPECT_TRUE(p.client.engine().session_reused());
        EXPECT_FALSE(p.server.engine().early_data_accepted());
        EXPECT_EQ(co_await read_exactly(p.server, 5), "plain");
    }());
}

// The client's Finished, the rest of its first bytes and what more() gives (called once, after
// the handshake completed) go out in one write, and the server reads them with its Finished: a
// full handshake, then a resumed one (with `early_data`, "first" goes as 0-RTT data, and
// EndOfEarlyData and the Finished go with " and more"). With nothing behind it the Finished goes
// alone, at once. In a full TLS 1.2 handshake the server's Finished comes last: the bytes go in a
// write of their own, a round trip after the client's Finished. On the way, the server's
// handshake_server(on_flight) calls on_flight() once, when its flight is out and the client's
// answer is awaited (the handshake not done, the ALPN chosen, something written); with early
// data accepted, just before the handshake returns.
void bytes_behind_the_finished(int max_version, bool early_data) {
    test::trust_only(shared_pki().ca_pem);
    tls::client_context cctx(client_opts(early_data));
    tls::server_context sctx(server_opts());
    ASSERT_EQ(SSL_CTX_set_max_proto_version(sctx.native_handle(), max_version), 1);
    asio::io_context ctx;
    test::run(ctx, [&]() -> asio::awaitable<void> {
        for (bool resumed : {false, true}) {
            auto p = make_streams(ctx, cctx, sctx);
            int calls = 0;
            auto more = [&] {
                ++calls;
                EXPECT_TRUE(p.client.engine().handshake_done());
                return bytes(" and more");
            };
            int flights = 0;
            auto on_flight = [&] {
                ++flights;
                EXPECT_FALSE(p.server.engine().handshake_done());
                EXPECT_EQ(p.server.engine().alpn(), "http/1.1");
                EXPECT_GE(p.server.next_layer().writes(), 1u);
            };
            auto [c, s] = co_await (p.client.handshake_client(bytes("first"), more) &&
                                    p.server.handshake_server(on_flight));
            CO_ASSERT_OK(c);
            CO_ASSERT_OK(s);
            EXPECT_EQ(calls, 1);
            EXPECT_EQ(flights, 1) << (resumed ? "resumed" : "full");
            EXPECT_EQ(p.client.engine().session_reused(), resumed);
            EXPECT_EQ(p.client.engine().early_data_accepted(), early_data && resumed);
            const bool full_tls12 = max_version == TLS1_2_VERSION && !resumed;
            // ClientHello (with the early data); Finished + bytes.
            EXPECT_EQ(p.client.next_layer().writes(), full_tls12 ? 3u : 2u);
            if (!p.server.engine().early_data_accepted()) {
                EXPECT_EQ(p.server.engine().has_buffered_input(), !full_tls12);
            }
            EXPECT_EQ(co_await read_exactly(p.server, 14), "first and more");
            co_await p.server.write(bytes("ok"), {});
            EXPECT_EQ(co_await read_exactly(p.client, 2), "ok");
        }
        // Nothing behind it: the Finished alone, and the server's handshake completes.
        auto p = make_streams(ctx, cctx, sctx);
        auto [c, s] = co_await (p.client.handshake_client({}) && p.server.handshake_server());
        CO_ASSERT_OK(c);
        CO_ASSERT_OK(s);
        co_await p.server.write(bytes("hi"), {});
        EXPECT_EQ(co_await read_exactly(p.client, 2), "hi");
    }());
}

TEST(TlsStream, FinishedAndTheBytesBehindItGoInOneWrite) {
    bytes_behind_the_finished(TLS1_3_VERSION, false);
}

TEST(TlsStream, BytesBehindTheFinishedWithTls12) {
    bytes_behind_the_finished(TLS1_2_VERSION, false);
}

TEST(TlsStream, BytesBehindTheFinishedWithEarlyData) {
    bytes_behind_the_finished(TLS1_3_VERSION, true);
}

// No flight, no call: a client that sends something other than a ClientHello, or closes before
// one. A client that closes after the server's flight was told of it.
TEST(TlsStream, ServerFlightOutIsNotToldWithoutOne) {
    tls::server_context sctx(server_opts());
    asio::io_context ctx;
    test::run(ctx, [&]() -> asio::awaitable<void> {
        for (std::string_view sent :
             {std::string_view("GET / HTTP/1.1\r\n\r\n"), std::string_view()}) {
            auto [a, b] = mem_stream::make_pair(ctx.get_executor());
            stream server(std::move(b), sctx.make_engine());
            server.next_layer().append(sent);
            a.close();
            int calls = 0;
            error_code ec = co_await server.handshake_server([&] { ++calls; });
            EXPECT_TRUE(ec);
            EXPECT_EQ(calls, 0);
        }
    }());
}

// Server-side 0-RTT: with early data accepted, the server reads the client's first bytes and
// answers them (0.5-RTT data), even closes its side, before the client's Finished has been read;
// the handshake completes on the server's next read, and close_notify follows it.
TEST(TlsStream, ServerAnswersEarlyDataBeforeClientFinished) {
    test::trust_only(shared_pki().ca_pem);
    tls::client_context cctx(client_opts(true));
    tls::server_context sctx(server_opts());
    asio::io_context ctx;
    test::run(ctx, [&]() -> asio::awaitable<void> {
        co_await prime_session(ctx, cctx, sctx);
        auto p = make_streams(ctx, cctx, sctx);
        auto server = [&]() -> asio::awaitable<void> {
            CO_ASSERT_OK(co_await p.server.handshake_server());
            EXPECT_TRUE(p.server.engine().early_data_accepted());
            EXPECT_FALSE(p.server.engine().handshake_done());
            EXPECT_EQ(co_await read_exactly(p.server, 5), "hello");
            auto [wec, wn] = co_await p.server.write(bytes("reply"), {});
            CO_ASSERT_OK(wec);
            CO_ASSERT_OK(co_await p.server.shutdown_send()); // held back, not an error
            EXPECT_FALSE(p.server.engine().handshake_done());
            auto [got, end] = co_await read_to_end(p.server);
            EXPECT_EQ(end, asio::error::eof);
            EXPECT_EQ(std::string(got.begin(), got.end()), "more");
            EXPECT_TRUE(p.server.engine().handshake_done());
            auto [late_ec, late_n] = co_await p.server.write(bytes("late"), {});
            EXPECT_EQ(late_ec, asio::error::shut_down);
        };
        auto client = [&]() -> asio::awaitable<void> {
            CO_ASSERT_OK(co_await p.client.handshake_client(bytes("hello")));
            EXPECT_TRUE(p.client.engine().early_data_accepted());
            auto [got, end] = co_await read_to_end(p.client);
            EXPECT_EQ(end, asio::error::eof); // close_notify, after the handshake completed
            EXPECT_EQ(std::string(got.begin(), got.end()), "reply");
            auto [wec, wn] = co_await p.client.write(bytes("more"), {});
            CO_ASSERT_OK(wec);
            co_await p.client.shutdown_send();
        };
        co_await (server() && client());
    }());
}

// Like the relay, each side closes its stream when an operation fails, so the peer's pending
// operation ends too.
asio::awaitable<error_code> closing_on_error(stream& s, asio::awaitable<error_code> op) {
    error_code ec = co_await std::move(op);
    if (ec) {
        s.close();
    }
    co_return ec;
}

asio::awaitable<error_code> read_n_or_close(stream& s, std::size_t n) {
    std::array<std::uint8_t, 4096> buf;
    for (std::size_t got = 0; got < n;) {
        auto [ec, k] = co_await s.read_some(buf);
        if (ec) {
            s.close();
            co_return ec;
        }
        got += k;
    }
    co_return error_code{};
}

// Every transport failure point ends in an error on some operation, never a hang or crash.
TEST(TlsStream, TransportFailureAtEveryOperation) {
    test::trust_only(shared_pki().ca_pem);
    tls::client_context cctx(client_opts());
    tls::server_context sctx(server_opts());
    std::size_t failures = 0;
    for (std::size_t fail_at = 0; fail_at < 24; ++fail_at) {
        for (int side = 0; side < 2; ++side) {
            asio::io_context ctx;
            test::run(ctx, [&]() -> asio::awaitable<void> {
                auto p = make_streams(ctx, cctx, sctx);
                (side == 0 ? p.client : p.server).next_layer().fail_after(fail_at);
                auto [c, s] =
                    co_await (closing_on_error(p.client, p.client.handshake_client(bytes("hi"))) &&
                              closing_on_error(p.server, p.server.handshake_server()));
                if (c || s) {
                    ++failures;
                    co_return;
                }
                auto big = pattern(100000, 3);
                auto [w, r] =
                    co_await (closing_on_error(p.client, write_all_of(p.client, big, 8192)) &&
                              read_n_or_close(p.server, big.size() + 2));
                if (w || r) {
                    ++failures;
                }
            }());
        }
    }
    EXPECT_GT(failures, 0u);
}

} // namespace
} // namespace kaminari::net

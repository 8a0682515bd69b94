#include "kaminari/net/ws_handshake.hpp"

#include "support/mem_stream.hpp"

#include <kaminari/codec/handshake.hpp>
#include <kaminari/net/ws_stream.hpp>

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kaminari::net {
namespace {

using bytes = std::vector<std::uint8_t>;
using codec::mask_mode;
using codec::role;
using test::mem_stream;
using test::runner;
using ws = ws_stream<mem_stream>;

bytes to_bytes(std::string_view s) {
    return {s.begin(), s.end()};
}

// Reads until `want` bytes arrived or an error.
asio::awaitable<void> read_exactly(ws& s, std::size_t want, std::size_t buf_size, bytes& got,
                                   error_code& ec) {
    bytes buf(buf_size);
    while (got.size() < want) {
        auto r = co_await s.read_some(buf);
        if (r.ec) {
            ec = r.ec;
            co_return;
        }
        got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(r.n));
    }
}

const ws_options opts{"example.com", "/ws", mask_mode::skip};

TEST(WsHandshake, ClientAndServerAgreeAndKeepPipelinedData) {
    for (mask_mode mode : {mask_mode::skip, mask_mode::fixed, mask_mode::standard}) {
        runner rn;
        auto [a, b] = mem_stream::make_pair(rn.ctx.get_executor());
        a.read_size(5);
        ws client(std::move(a), role::client, mode);
        ws server(std::move(b), role::server);
        bytes got_server;
        bytes got_client;
        rn.spawn([](ws& c, bytes& got) -> asio::awaitable<void> {
            EXPECT_FALSE(co_await ws_client_handshake(c, opts));
            bytes hello = to_bytes("hello");
            EXPECT_FALSE((co_await c.write({}, hello)).ec);
            error_code ec;
            co_await read_exactly(c, 5, 64, got, ec);
            EXPECT_FALSE(ec);
        }(client, got_client));
        rn.spawn([](ws& s, bytes& got) -> asio::awaitable<void> {
            EXPECT_FALSE(co_await ws_server_handshake(s, opts));
            bytes world = to_bytes("world");
            EXPECT_FALSE((co_await s.write({}, world)).ec);
            error_code ec;
            co_await read_exactly(s, 5, 64, got, ec);
            EXPECT_FALSE(ec);
        }(server, got_server));
        rn.run();
        EXPECT_EQ(got_server, to_bytes("hello"));
        EXPECT_EQ(got_client, to_bytes("world"));
    }
}

TEST(WsHandshake, ServerKeepsBytesBehindTheRequest) {
    runner rn;
    auto [b, peer] = mem_stream::make_pair(rn.ctx.get_executor());
    ws server(std::move(b), role::server);
    const std::string request = "GET /ws HTTP/1.1\r\nHost: example.com:443\r\n"
                                "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                "Sec-WebSocket-Version: 13\r\n\r\n";
    server.next_layer().append(request + std::string("\x82\x83\x01\x02\x03\x04"
                                                     "```"
                                                     "\x82\x81\0\0\0\0d",
                                                     16));
    bytes got;
    rn.spawn([](ws& s, bytes& out) -> asio::awaitable<void> {
        EXPECT_FALSE(co_await ws_server_handshake(s, opts));
        error_code ec;
        co_await read_exactly(s, 4, 2, out, ec);
        EXPECT_FALSE(ec);
    }(server, got));
    rn.run();
    EXPECT_EQ(got, to_bytes("abcd"));
    EXPECT_EQ(peer.take(), to_bytes("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                    "Connection: Upgrade\r\n"
                                    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"));
}

TEST(WsHandshake, ClientKeepsFrameBehindThe101) {
    runner rn;
    auto [a, peer] = mem_stream::make_pair(rn.ctx.get_executor());
    ws client(std::move(a), role::client);
    bytes got;
    rn.spawn([](mem_stream& p) -> asio::awaitable<void> {
        // Act as the server: read the request, answer 101 and a frame in one write.
        bytes buf(4096);
        std::size_t have = 0;
        codec::request_result r;
        do {
            auto [ec, n] = co_await p.read_some(std::span(buf).subspan(have));
            EXPECT_FALSE(ec);
            if (ec) {
                co_return;
            }
            have += n;
            r = codec::parse_request(std::span(buf.data(), have), "example.com", "/ws");
        } while (r.err == codec::errc::need_more);
        EXPECT_EQ(r.err, codec::errc::ok);
        std::array<std::uint8_t, 512> out{};
        std::size_t len = codec::encode_accept_response(out, r.key);
        const std::string_view frame("\x82\x03"
                                     "abc",
                                     5);
        std::copy(frame.begin(), frame.end(), out.begin() + static_cast<std::ptrdiff_t>(len));
        len += frame.size();
        co_await p.write({}, std::span(out.data(), len));
    }(peer));
    rn.spawn([](ws& c, bytes& out) -> asio::awaitable<void> {
        EXPECT_FALSE(co_await ws_client_handshake(c, opts));
        error_code ec;
        co_await read_exactly(c, 3, 64, out, ec);
        EXPECT_FALSE(ec);
    }(client, got));
    rn.run();
    EXPECT_EQ(got, to_bytes("abc"));
}

TEST(WsHandshake, WrongPathGets404) {
    runner rn;
    auto [a, b] = mem_stream::make_pair(rn.ctx.get_executor());
    ws client(std::move(a), role::client);
    ws server(std::move(b), role::server);
    error_code client_ec, server_ec;
    rn.spawn([](ws& c, error_code& ec) -> asio::awaitable<void> {
        const ws_options wrong{"example.com", "/other", mask_mode::skip};
        ec = co_await ws_client_handshake(c, wrong);
    }(client, client_ec));
    rn.spawn([](ws& s, error_code& ec) -> asio::awaitable<void> {
        ec = co_await ws_server_handshake(s, opts);
    }(server, server_ec));
    rn.run();
    EXPECT_EQ(server_ec, codec::errc::wrong_path);
    EXPECT_EQ(server_ec, ws_condition::handshake_failed);
    EXPECT_EQ(client_ec, codec::errc::bad_status);
    EXPECT_EQ(client_ec, ws_condition::handshake_failed);
}

TEST(WsHandshake, ProbesGetWebServerAnswers) {
    struct probe {
        std::string request;
        std::string_view status_line;
        codec::errc expected;
    };
    const probe probes[] = {
        {"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", "HTTP/1.1 404 Not Found\r\n",
         codec::errc::wrong_path},
        {"GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
         "Sec-WebSocket-Version: 8\r\n\r\n",
         "HTTP/1.1 426 Upgrade Required\r\n", codec::errc::bad_version},
        {"GET /ws HTTP/1.1\r\nHost: example.com\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n",
         codec::errc::missing_upgrade},
        {"GET /ws HTTP/1.1\r\nX: " + std::string(9000, 'x'),
         "HTTP/1.1 431 Request Header Fields Too Large\r\n", codec::errc::head_too_large},
    };
    for (const auto& p : probes) {
        runner rn;
        auto [b, peer] = mem_stream::make_pair(rn.ctx.get_executor());
        b.read_size(1000);
        ws server(std::move(b), role::server);
        server.next_layer().append(p.request);
        error_code ec;
        rn.spawn([](ws& s, error_code& out) -> asio::awaitable<void> {
            out = co_await ws_server_handshake(s, opts);
        }(server, ec));
        rn.run();
        EXPECT_EQ(ec, p.expected);
        const bytes wire = peer.take();
        const std::string text(wire.begin(), wire.end());
        EXPECT_EQ(text.rfind(p.status_line, 0), 0u) << text;
        EXPECT_TRUE(peer.peer_done()); // response then FIN
    }
}

bytes pattern(std::size_t n) {
    bytes b(n);
    for (std::size_t i = 0; i < n; ++i) {
        b[i] = static_cast<std::uint8_t>(i * 13 + n);
    }
    return b;
}

TEST(WsHandshake, EarlyDataArrivesFirstAndExactlyOnce) {
    // The app's first read was shorter than, exactly, or longer than `ed`: the server reads
    // every byte once, in order, then the frames the client sends afterwards.
    for (std::size_t first_len : {1u, 99u, 100u, 101u, 3000u}) {
        for (mask_mode mode : {mask_mode::skip, mask_mode::standard}) {
            runner rn;
            auto [a, b] = mem_stream::make_pair(rn.ctx.get_executor());
            b.read_size(7);
            ws client(std::move(a), role::client, mode);
            ws server(std::move(b), role::server);
            const ws_options early_opts{"example.com", "/ws", mode, 100};
            const bytes first = pattern(first_len);
            ws_client_request req;
            ASSERT_FALSE(make_client_request(early_opts, req, first));
            EXPECT_EQ(req.early_size, std::min<std::size_t>(first_len, 100));
            bytes got;
            std::size_t early = 0;
            rn.spawn([](ws& c, ws_client_request& r) -> asio::awaitable<void> {
                EXPECT_FALSE(co_await ws_client_handshake(c, r));
                EXPECT_TRUE(r.early_echoed);
                bytes later = to_bytes("later");
                EXPECT_FALSE((co_await c.write({}, later)).ec);
            }(client, req));
            rn.spawn(
                [](ws& s, bytes& out, std::size_t& e, std::size_t want) -> asio::awaitable<void> {
                    EXPECT_FALSE(co_await ws_server_handshake(s, opts, &e));
                    error_code ec;
                    co_await read_exactly(s, want, 5, out, ec);
                    EXPECT_FALSE(ec);
                }(server, got, early, first_len + 5));
            rn.run();
            bytes want = first;
            want.insert(want.end(), {'l', 'a', 't', 'e', 'r'});
            EXPECT_EQ(got, want) << first_len;
            EXPECT_EQ(early, std::min<std::size_t>(first_len, 100));
        }
    }
}

TEST(WsHandshake, ServerEchoesEarlyDataAndKeepsPipelinedFrames) {
    runner rn;
    auto [b, peer] = mem_stream::make_pair(rn.ctx.get_executor());
    ws server(std::move(b), role::server);
    // Xray's client: standard-alphabet padding is accepted too ("hello" = aGVsbG8=).
    const std::string request = "GET /ws HTTP/1.1\r\nHost: example.com\r\n"
                                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                "Sec-WebSocket-Protocol: aGVsbG8=\r\n"
                                "Sec-WebSocket-Version: 13\r\n\r\n";
    server.next_layer().append(request + std::string("\x82\x81\0\0\0\0!", 7));
    bytes got;
    std::size_t early = 0;
    rn.spawn([](ws& s, bytes& out, std::size_t& e) -> asio::awaitable<void> {
        EXPECT_FALSE(co_await ws_server_handshake(s, opts, &e));
        error_code ec;
        co_await read_exactly(s, 6, 3, out, ec);
        EXPECT_FALSE(ec);
    }(server, got, early));
    rn.run();
    EXPECT_EQ(got, to_bytes("hello!"));
    EXPECT_EQ(early, 5u);
    EXPECT_EQ(peer.take(), to_bytes("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                    "Connection: Upgrade\r\n"
                                    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                                    "Sec-WebSocket-Protocol: aGVsbG8=\r\n\r\n"));
}

TEST(WsHandshake, ServerIgnoresSubprotocolLists) {
    runner rn;
    auto [b, peer] = mem_stream::make_pair(rn.ctx.get_executor());
    ws server(std::move(b), role::server);
    server.next_layer().append("GET /ws HTTP/1.1\r\nHost: example.com\r\n"
                               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                               "Sec-WebSocket-Protocol: chat, superchat\r\n"
                               "Sec-WebSocket-Version: 13\r\n\r\n" +
                               std::string("\x82\x81\0\0\0\0!", 7));
    bytes got;
    std::size_t early = 99;
    rn.spawn([](ws& s, bytes& out, std::size_t& e) -> asio::awaitable<void> {
        EXPECT_FALSE(co_await ws_server_handshake(s, opts, &e));
        error_code ec;
        co_await read_exactly(s, 1, 64, out, ec);
        EXPECT_FALSE(ec);
    }(server, got, early));
    rn.run();
    EXPECT_EQ(got, to_bytes("!"));
    EXPECT_EQ(early, 0u);
    const bytes wire = peer.take();
    EXPECT_EQ(std::string(wire.begin(), wire.end()).find("Sec-WebSocket-Protocol"),
              std::string::npos);
}

// A server that answers 101 with `protocol_line` (empty: no Sec-WebSocket-Protocol), then
// reads frames until `want` payload bytes arrived.
asio::awaitable<void> plain_server(mem_stream& p, std::string protocol_line, std::size_t want,
                                   bytes& got) {
    bytes buf(codec::max_head_size);
    std::size_t have = 0;
    codec::request_result r;
    do {
        auto [ec, n] = co_await p.read_some(std::span(buf).subspan(have));
        if (ec) {
            co_return;
        }
        have += n;
        r = codec::parse_request(std::span(buf.data(), have), "example.com", "/ws");
    } while (r.err == codec::errc::need_more);
    EXPECT_EQ(r.err, codec::errc::ok);
    std::array<std::uint8_t, 512> out{};
    std::size_t len = codec::encode_accept_response(out, r.key);
    std::string resp(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(len));
    resp.insert(resp.size() - 2, protocol_line);
    co_await p.write({}, std::span(reinterpret_cast<std::uint8_t*>(resp.data()), resp.size()));
    ws rest(std::move(p), role::server);
    rest.set_leftover(std::span(buf.data() + r.consumed, have - r.consumed));
    error_code ec;
    co_await read_exactly(rest, want, 64, got, ec);
}

TEST(WsHandshake, EarlyDataNotEchoedIsSentAgainAsFrames) {
    for (std::size_t first_len : {50u, 100u, 150u}) {
        runner rn;
        auto [a, peer] = mem_stream::make_pair(rn.ctx.get_executor());
        ws client(std::move(a), role::client, mask_mode::fixed);
        const ws_options early_opts{"example.com", "/ws", mask_mode::fixed, 100};
        const bytes first = pattern(first_len);
        ws_client_request req;
        ASSERT_FALSE(make_client_request(early_opts, req, first));
        bytes got;
        rn.spawn(plain_server(peer, "", first_len, got));
        rn.spawn([](ws& c, ws_client_request& r) -> asio::awaitable<void> {
            EXPECT_FALSE(co_await ws_client_handshake(c, r));
            EXPECT_FALSE(r.early_echoed);
        }(client, req));
        rn.run();
        EXPECT_EQ(got, first) << first_len; // all of it, once
    }
}

TEST(WsHandshake, EarlyDataWithAnotherProtocolFails) {
    runner rn;
    auto [a, peer] = mem_stream::make_pair(rn.ctx.get_executor());
    ws client(std::move(a), role::client);
    const ws_options early_opts{"example.com", "/ws", mask_mode::skip, 100};
    ws_client_request req;
    ASSERT_FALSE(make_client_request(early_opts, req, to_bytes("hello")));
    EXPECT_EQ(req.protocol, "aGVsbG8");
    bytes got;
    error_code ec;
    rn.spawn(plain_server(peer, "Sec-WebSocket-Protocol: chat\r\n", 0, got));
    rn.spawn([](ws& c, ws_client_request& r, error_code& out) -> asio::awaitable<void> {
        out = co_await ws_client_handshake(c, r);
    }(client, req, ec));
    rn.run();
    EXPECT_EQ(ec, codec::errc::bad_protocol);
    EXPECT_EQ(ec, ws_condition::handshake_failed);
}

TEST(WsHandshake, NoEarlyDataWithoutEdOrWithoutBytes) {
    ws_client_request req;
    ASSERT_FALSE(make_client_request(opts, req, to_bytes("hello")));
    EXPECT_EQ(req.early_size, 0u);
    EXPECT_TRUE(req.protocol.empty());
    const std::string text(req.bytes().begin(), req.bytes().end());
    EXPECT_EQ(text.find("Sec-WebSocket-Protocol"), std::string::npos);
    const ws_options early_opts{"example.com", "/ws", mask_mode::skip, 2048};
    ASSERT_FALSE(make_client_request(early_opts, req));
    EXPECT_EQ(req.early_size, 0u);
    EXPECT_TRUE(req.protocol.empty());
    // 2048 bytes fit with a long host and path.
    const ws_options long_opts{std::string(200, 'h'), "/" + std::string(500, 'p'), mask_mode::skip,
                               2048};
    ASSERT_FALSE(make_client_request(long_opts, req, pattern(5000)));
    EXPECT_EQ(req.early_size, 2048u);
    EXPECT_EQ(req.protocol.size(), 2731u);
}

TEST(WsHandshake, PeerClosingEarlyIsAnError) {
    runner rn;
    auto [a, peer] = mem_stream::make_pair(rn.ctx.get_executor());
    ws client(std::move(a), role::client);
    client.next_layer().append("HTTP/1.1 101 Switching");
    error_code ec;
    rn.spawn([](ws& c, mem_stream& p, error_code& out) -> asio::awaitable<void> {
        co_await p.shutdown_send();
        out = co_await ws_client_handshake(c, opts);
    }(client, peer, ec));
    rn.run();
    EXPECT_EQ(ec, asio::error::eof);
}

} // namespace
} // namespace kaminari::net

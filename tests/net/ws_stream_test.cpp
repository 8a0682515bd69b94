#include "kaminari/net/ws_stream.hpp"

#include "support/mem_stream.hpp"

#include <kaminari/codec/frame.hpp>
#include <kaminari/net/ws_handshake.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace kaminari::net {
namespace {

using bytes = std::vector<std::uint8_t>;
using codec::mask_mode;
using codec::role;
using test::mem_stream;
using ws = ws_stream<mem_stream>;

bytes pattern(std::size_t n, std::uint32_t seed) {
    bytes v(n);
    for (auto& b : v) {
        seed = seed * 1664525u + 1013904223u;
        b = static_cast<std::uint8_t>(seed >> 24);
    }
    return v;
}

bytes to_bytes(std::string_view s) {
    return {s.begin(), s.end()};
}

using test::runner;

// Reads until `want` bytes arrived or an error; returns what arrived.
asio::awaitable<void> read_exactly(ws& s, std::size_t want, std::size_t buf_size, bytes& got,
                                   error_code& ec) {
    bytes buf(buf_size);
    while (got.size() < want) {
        auto r = co_await s.read_some(buf);
        if (r.ec) {
            ec = r.ec;
            co_return;
        }
        EXPECT_GT(r.n, 0u);
        got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(r.n));
    }
}

// Writes `data` in chunks of awkward sizes; the caller's copy stays intact.
asio::awaitable<void> write_chunks(ws& s, bytes data, error_code& ec) {
    static constexpr std::size_t sizes[] = {8192, 1, 3, 16384, 125, 126, 65535, 65536, 4097};
    std::size_t at = 0;
    for (std::size_t i = 0; at < data.size(); ++i) {
        const std::size_t n = std::min(sizes[i % std::size(sizes)], data.size() - at);
        auto r = co_await s.write({}, std::span(data.data() + at, n));
        if (r.ec) {
            ec = r.ec;
            co_return;
        }
        EXPECT_EQ(r.n, n);
        at += n;
    }
}

TEST(WsStream, TransfersOneMiBInEachMaskMode) {
    for (mask_mode mode : {mask_mode::skip, mask_mode::fixed, mask_mode::standard}) {
        runner rn;
        auto [a, b] = mem_stream::make_pair(rn.ctx.get_executor());
        a.read_size(4093);
        b.read_size(7);
        b.write_size(65521);
        ws client(std::move(a), role::client, mode);
        ws server(std::move(b), role::server);
        const bytes up = pattern(1 << 20, 1);
        const bytes down = pattern((1 << 20) + 3, 2);
        bytes got_up;
        bytes got_down;
        error_code e1, e2, e3, e4;
        rn.spawn(write_chunks(client, up, e1));
        rn.spawn(read_exactly(server, up.size(), 3001, got_up, e2));
        rn.spawn(write_chunks(server, down, e3));
        rn.spawn(read_exactly(client, down.size(), 8192, got_down, e4));
        rn.run();
        EXPECT_FALSE(e1 || e2 || e3 || e4) << e1 << e2 << e3 << e4;
        EXPECT_TRUE(got_up == up) << "mode " << int(mode);
        EXPECT_TRUE(got_down == down) << "mode " << int(mode);
    }
}

TEST(WsStream, MaskModesOnTheWire) {
    for (mask_mode mode : {mask_mode::skip, mask_mode::fixed, mask_mode::standard}) {
        runner rn;
        auto [a, peer] = mem_stream::make_pair(rn.ctx.get_executor());
        ws client(std::move(a), role::client, mode);
        const bytes payload = pattern(300, 9);
        rn.spawn([](ws& c, bytes p) -> asio::awaitable<void> {
            for (int i = 0; i < 3; ++i) {
                bytes copy = p;
                auto r = co_await c.write({}, copy);
                EXPECT_FALSE(r.ec);
                if (c.mode() != mask_mode::skip) {
                    EXPECT_NE(copy, p); // masked in the caller's buffer
                }
            }
        }(client, payload));
        rn.run();
        const bytes wire = peer.take();
        std::vector<codec::mask_key> keys;
        codec::frame_decoder d(role::server);
        std::size_t at = 0;
        while (at < wire.size()) {
            const auto h = codec::decode_header(std::span(wire).subspan(at), role::server);
            ASSERT_EQ(h.err, codec::errc::ok);
            EXPECT_TRUE(h.header.masked);
            EXPECT_TRUE(h.header.fin);
            EXPECT_EQ(h.header.op, codec::opcode::binary);
            EXPECT_EQ(h.header.length, payload.size());
            keys.push_back(h.header.key);
            at += h.consumed + payload.size();
        }
        ASSERT_EQ(keys.size(), 3u);
        switch (mode) {
        case mask_mode::skip:
            EXPECT_TRUE(codec::is_zero(keys[0]) && codec::is_zero(keys[1]) &&
                        codec::is_zero(keys[2]));
            break;
        case mask_mode::fixed:
            EXPECT_FALSE(codec::is_zero(keys[0]));
            EXPECT_TRUE(keys[0] == keys[1] && keys[1] == keys[2]);
            break;
        case mask_mode::standard:
            EXPECT_TRUE(keys[0] != keys[1] && keys[1] != keys[2]);
            break;
        }
        bytes copy = wire;
        const auto step = d.feed(copy);
        ASSERT_EQ(step.err, codec::errc::ok);
        ASSERT_EQ(step.payload, 900u);
        for (int i = 0; i < 3; ++i) {
            EXPECT_TRUE(std::equal(payload.begin(), payload.end(), copy.begin() + i * 300));
        }
    }
}

TEST(WsStream, EveryReadCapAndBufferSize) {
    // Frames from a raw server: split headers and payloads reach the ws layer at every cap.
    bytes wire;
    bytes want;
    for (std::size_t n : {0u, 1u, 2u, 5u, 125u, 126u, 200u}) {
        const bytes p = pattern(n, static_cast<std::uint32_t>(n));
        codec::frame_encoder e(role::server, mask_mode::skip);
        bytes copy = p;
        const auto h = e.encode(codec::opcode::binary, copy);
        wire.insert(wire.end(), h.begin(), h.end());
        wire.insert(wire.end(), p.begin(), p.end());
        want.insert(want.end(), p.begin(), p.end());
    }
    for (std::size_t cap = 1; cap <= 32; ++cap) {
        for (std::size_t buf_size : {1u, 2u, 13u, 4096u}) {
            runner rn;
            auto [a, peer] = mem_stream::make_pair(rn.ctx.get_executor());
            a.read_size(cap);
            ws client(std::move(a), role::client);
            client.next_layer().append(wire);
            bytes got;
            error_code ec;
            rn.spawn(read_exactly(client, want.size(), buf_size, got, ec));
            rn.run();
            ASSERT_FALSE(ec) << ec.message();
            ASSERT_EQ(got, want) << "cap " << cap << " buf " << buf_size;
        }
    }
}

TEST(WsStream, PingIsAnsweredWithPong) {
    runner rn;
    auto [a, peer] = mem_stream::make_pair(rn.ctx.get_executor());
    ws client(std::move(a), role::client, mask_mode::skip);
    client.next_layer().append(std::string_view("\x89\x03"
                                                "abc"
                                                "\x8a\x01z"
                                                "\x82\x02hi",
                                                12));
    bytes got;
    error_code ec;
    rn.spawn(read_exactly(client, 2, 64, got, ec));
    rn.run();
    EXPECT_FALSE(ec);
    EXPECT_EQ(got, to_bytes("hi"));
    // Client pong: masked with the zero key, same payload; the pong from the peer is ignored.
    EXPECT_EQ(peer.take(), to_bytes(std::string_view("\x8a\x83\0\0\0\0abc", 9)));
}

TEST(WsStream, ServerPongIsUnmaskedAndUnmasksPing) {
    runner rn;
    auto [b, peer] = mem_stream::make_pair(rn.ctx.get_executor());
    ws server(std::move(b), role::server);
    // Masked ping "Hello" (RFC 6455 §5.7 key) and a masked 1-byte data frame.
    server.next_layer().append(std::string_view("\x89\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
                                                "\x82\x81\x01\x02\x03\x04\x79",
                                                18));
    bytes got;
    error_code ec;
    rn.spawn(read_exactly(server, 1, 64, got, ec));
    rn.run();
    EXPECT_FALSE(ec);
    EXPECT_EQ(got, to_bytes("x"));
    EXPECT_EQ(peer.take(), to_bytes("\x8a\x05Hello"));
}

TEST(WsStream, CloseEndsReadsAndIsAnsweredWhenSendingEnds) {
    runner rn;
    auto [a, peer] = mem_stream::make_pair(rn.ctx.get_executor());
    ws client(std::move(a), role::client, mask_mode::fixed);
    client.next_layer().append(std::string_view("\x82\x01y\x88\x02\x03\xe8\x82\x01z", 9));
    rn.spawn([](ws& c, mem_stream& p) -> asio::awaitable<void> {
        bytes buf(64);
        auto r = co_await c.read_some(buf);
        EXPECT_FALSE(r.ec);
        EXPECT_EQ(r.n, 1u);
        EXPECT_EQ(buf[0], 'y');
        r = co_await c.read_some(buf);
        EXPECT_EQ(r.ec, asio::error::eof);
        r = co_await c.read_some(buf);
        EXPECT_EQ(r.ec, asio::error::eof);
        // The peer's close ended only its direction: ours still carries data...
        EXPECT_TRUE(p.take().empty());
        bytes data{1, 2, 3};
        r = co_await c.write({}, data);
        EXPECT_FALSE(r.ec);
        EXPECT_FALSE(p.peer_done());
        // ...until our sending ends: then the close reply goes out, then the FIN.
        EXPECT_FALSE(co_await c.shutdown_send());
        EXPECT_TRUE(p.peer_done());
        r = co_await c.write({}, data);
        EXPECT_EQ(r.ec, codec::errc::closed);
    }(client, peer));
    rn.run();
    // A masked 3-byte binary frame, then the close reply echoing 1000 with the connection key.
    const bytes wire = peer.take();
    ASSERT_EQ(wire.size(), 9u + 8u);
    EXPECT_EQ(wire[0], 0x82);
    EXPECT_EQ(wire[9], 0x88);
    EXPECT_EQ(wire[10], 0x82);
    EXPECT_EQ(wire[15] ^ wire[11], 0x03);
    EXPECT_EQ(wire[16] ^ wire[12], 0xe8);
}

TEST(WsStream, TextFrameIsRefusedWithClose1003) {
    runner rn;
    auto [b, peer] = mem_stream::make_pair(rn.ctx.get_executor());
    ws server(std::move(b), role::server);
    server.next_layer().append(std::string_view("\x81\x81\0\0\0\0t", 7));
    rn.spawn([](ws& s) -> asio::awaitable<void> {
        bytes buf(64);
        auto r = co_await s.read_some(buf);
        EXPECT_EQ(r.ec, codec::errc::text_frame);
        EXPECT_EQ(r.ec, ws_condition::protocol_violation);
        EXPECT_NE(r.ec, ws_condition::handshake_failed);
        r = co_await s.read_some(buf);
        EXPECT_EQ(r.ec, codec::errc::text_frame);
    }(server));
    rn.run();
    EXPECT_EQ(peer.take(), to_bytes("\x88\x02\x03\xeb"));
}

TEST(WsStream, ProtocolErrorSendsClose1002) {
    runner rn;
    auto [b, peer] = mem_stream::make_pair(rn.ctx.get_executor());
    ws server(std::move(b), role::server);
    server.next_layer().append(std::string_view("\x82\x01x", 3)); // unmasked frame to a server
    rn.spawn([](ws& s) -> asio::awaitable<void> {
        bytes buf(64);
        auto r = co_await s.read_some(buf);
        EXPECT_EQ(r.ec, codec::errc::missing_mask);
        EXPECT_EQ(r.ec, ws_condition::protocol_violation);
    }(server));
    rn.run();
    EXPECT_EQ(peer.take(), to_bytes("\x88\x02\x03\xea"));
}

TEST(WsStream, PongWaitsForDataFrameInProgress) {
    runner rn;
    auto [b, peer] = mem_stream::make_pair(rn.ctx.get_executor());
    b.write_size(1); // the data write yields after every byte
    ws server(std::move(b), role::server);
    server.next_layer().append(std::string_view("\x89\x80\0\0\0\0\x82\x81\0\0\0\0q", 13));
    const bytes payload = pattern(1000, 4);
    rn.spawn([](ws& s, bytes p) -> asio::awaitable<void> {
        auto r = co_await s.write({}, p);
        EXPECT_FALSE(r.ec);
    }(server, payload));
    bytes got;
    error_code ec;
    rn.spawn(read_exactly(server, 1, 64, got, ec));
    rn.run();
    EXPECT_FALSE(ec);
    const bytes wire = peer.take();
    ASSERT_EQ(wire.size(), 4 + 1000 + 2u);
    EXPECT_EQ(wire[0], 0x82);
    EXPECT_TRUE(std::equal(payload.begin(), payload.end(), wire.begin() + 4));
    EXPECT_EQ(wire[1004], 0x8a);
    EXPECT_EQ(wire[1005], 0x00);
}

TEST(WsStream, DataWriteWaitsForPongInProgress) {
    runner rn;
    auto [b, peer] = mem_stream::make_pair(rn.ctx.get_executor());
    b.write_size(1);
    ws server(std::move(b), role::server);
    server.next_layer().append(std::string_view("\x89\x83\0\0\0\0abc\x82\x81\0\0\0\0q", 16));
    bytes got;
    error_code ec;
    rn.spawn(read_exactly(server, 1, 64, got, ec)); // starts the pong first
    rn.spawn([](ws& s) -> asio::awaitable<void> {
        bytes p{'d', 'a', 't', 'a'};
        auto r = co_await s.write({}, p);
        EXPECT_FALSE(r.ec);
    }(server));
    rn.run();
    EXPECT_FALSE(ec);
    EXPECT_EQ(peer.take(), to_bytes("\x8a\x03"
                                    "abc"
                                    "\x82\x04"
                                    "data"));
}

TEST(WsStream, TruncatedFrameAndCleanEof) {
    runner rn;
    auto [a, peer] = mem_stream::make_pair(rn.ctx.get_executor());
    ws client(std::move(a), role::client);
    auto [c, peer2] = mem_stream::make_pair(rn.ctx.get_executor());
    ws client2(std::move(c), role::client);
    client.next_layer().append(std::string_view("\x82\x05"
                                                "ab",
                                                4));
    client2.next_layer().append(std::string_view("\x82\x02"
                                                 "ab",
                                                 4));
    rn.spawn([](mem_stream& p1, mem_stream& p2) -> asio::awaitable<void> {
        co_await p1.shutdown_send();
        co_await p2.shutdown_send();
    }(peer, peer2));
    rn.spawn([](ws& s1, ws& s2) -> asio::awaitable<void> {
        bytes buf(64);
        auto r = co_await s1.read_some(buf);
        EXPECT_EQ(r.n, 2u);
        r = co_await s1.read_some(buf);
        EXPECT_EQ(r.ec, codec::errc::truncated_frame);
        EXPECT_EQ(r.ec, ws_condition::protocol_violation);
        r = co_await s2.read_some(buf);
        EXPECT_EQ(r.n, 2u);
        r = co_await s2.read_some(buf);
        EXPECT_EQ(r.ec, asio::error::eof);
    }(client, client2));
    rn.run();
}

TEST(WsStream, ShutdownSendIsHalfCloseByCloseFrames) {
    runner rn;
    auto [a, b] = mem_stream::make_pair(rn.ctx.get_executor());
    ws client(std::move(a), role::client, mask_mode::standard);
    ws server(std::move(b), role::server);
    rn.spawn([](ws& c, ws& s) -> asio::awaitable<void> {
        bytes data{'u', 'p'};
        EXPECT_FALSE((co_await c.write({}, data)).ec);
        EXPECT_FALSE(co_await c.shutdown_send());
        // A close frame, not a FIN: proxies keep the other direction open.
        EXPECT_FALSE(s.next_layer().peer_done());
        bytes buf(16);
        auto r = co_await s.read_some(buf);
        EXPECT_EQ(r.n, 2u);
        r = co_await s.read_some(buf);
        EXPECT_EQ(r.ec, asio::error::eof);
        // The other direction still works.
        bytes back{'d', 'o', 'w', 'n'};
        EXPECT_FALSE((co_await s.write({}, back)).ec);
        r = co_await c.read_some(buf);
        EXPECT_EQ(r.n, 4u);
        EXPECT_EQ(buf[0], 'd');
        // The server's close answers the client's; both close frames have crossed, so the
        // server's FIN follows, and the client's once it reads the answer.
        EXPECT_FALSE(co_await s.shutdown_send());
        EXPECT_TRUE(c.next_layer().peer_done());
        r = co_await c.read_some(buf);
        EXPECT_EQ(r.ec, asio::error::eof);
        EXPECT_TRUE(s.next_layer().peer_done());
    }(client, server));
    rn.run();
}

TEST(WsStream, HeadIsSentAsPayload) {
    for (mask_mode mode : {mask_mode::skip, mask_mode::fixed, mask_mode::standard}) {
        runner rn;
        auto [a, b] = mem_stream::make_pair(rn.ctx.get_executor());
        ws client(std::move(a), role::client, mode);
        ws server(std::move(b), role::server);
        const bytes head = pattern(2500, 5);
        bytes got;
        error_code ec;
        rn.spawn([](ws& c, bytes h) -> asio::awaitable<void> {
            bytes body{'b', 'o', 'd', 'y'};
            auto r = co_await c.write(h, body);
            EXPECT_FALSE(r.ec);
            EXPECT_EQ(r.n, h.size() + 4);
            bytes none;
            r = co_await c.write({}, none);
            EXPECT_FALSE(r.ec);
            EXPECT_EQ(r.n, 0u);
        }(client, head));
        rn.spawn(read_exactly(server, head.size() + 4, 1000, got, ec));
        rn.run();
        bytes want = head;
        want.insert(want.end(), {'b', 'o', 'd', 'y'});
        EXPECT_EQ(got, want);
        EXPECT_EQ(head, pattern(2500, 5)); // const head never touched
    }
}

const ws_options opts{"example.com", "/ws", mask_mode::skip};

// beast doFailLoop: fail the N-th operation on one side, for every N, until a run succeeds.
// Every error path must end both sides without a hang, a crash or a leak.
TEST(WsStream, FailLoop) {
    for (int side = 0; side < 2; ++side) {
        bool succeeded = false;
        for (std::size_t n = 0; n < 200 && !succeeded; ++n) {
            runner rn;
            auto [a, b] = mem_stream::make_pair(rn.ctx.get_executor());
            (side == 0 ? a : b).fail_after(n);
            a.read_size(64);
            ws client(std::move(a), role::client, mask_mode::fixed);
            ws server(std::move(b), role::server);
            bool client_ok = false;
            bool server_ok = false;
            rn.spawn([](ws& c, bool& ok) -> asio::awaitable<void> {
                if (co_await ws_client_handshake(c, opts)) {
                    c.close();
                    co_return;
                }
                bytes data = pattern(1000, 3);
                if ((co_await c.write({}, data)).ec) {
                    c.close();
                    co_return;
                }
                bytes got;
                error_code ec;
                co_await read_exactly(c, 300, 100, got, ec);
                if (ec || got != pattern(300, 4)) {
                    c.close();
                    co_return;
                }
                ok = !(co_await c.shutdown_send());
                if (!ok) {
                    c.close();
                }
            }(client, client_ok));
            rn.spawn([](ws& s, bool& ok) -> asio::awaitable<void> {
                if (co_await ws_server_handshake(s, opts)) {
                    s.close();
                    co_return;
                }
                bytes got;
                error_code ec;
                co_await read_exactly(s, 1000, 77, got, ec);
                if (ec || got != pattern(1000, 3)) {
                    s.close();
                    co_return;
                }
                bytes back = pattern(300, 4);
                if ((co_await s.write({}, back)).ec) {
                    s.close();
                    co_return;
                }
                bytes buf(8);
                auto r = co_await s.read_some(buf);
                ok = r.ec == asio::error::eof;
                s.close();
            }(server, server_ok));
            rn.run();
            succeeded = client_ok && server_ok;
        }
        EXPECT_TRUE(succeeded) << "side " << side;
    }
}

} // namespace
} // namespace kaminari::net

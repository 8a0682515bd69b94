// The websocket codec on its hot paths: frame header encode/decode, the receive state machine
// over a 16 KiB frame (whole, and delivered in socket-sized reads), the send side, and the
// opening handshake (request parse, Sec-WebSocket-Accept, response parse).
//
//   codec_bench --benchmark_format=json > codec.json

#include <kaminari/codec/frame.hpp>
#include <kaminari/codec/frame_decoder.hpp>
#include <kaminari/codec/frame_encoder.hpp>
#include <kaminari/codec/handshake.hpp>
#include <kaminari/codec/mask.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

namespace {

namespace codec = kaminari::codec;

constexpr std::size_t frame_payload = 16 * 1024;
constexpr codec::mask_key nonzero_key{0x37, 0xfa, 0x21, 0x3d};

// ---- frame header ------------------------------------------------------------------------

// Args: {payload length, masked}. Lengths pick the 7-bit, 16-bit and 64-bit forms.
void BM_encode_header(benchmark::State& state) {
    codec::frame_header h;
    h.length = static_cast<std::uint64_t>(state.range(0));
    h.masked = state.range(1) != 0;
    h.key = nonzero_key;
    std::array<std::uint8_t, codec::max_header_size> out{};
    for (auto _ : state) {
        benchmark::DoNotOptimize(h);
        benchmark::DoNotOptimize(codec::encode_header(h, out));
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_decode_header(benchmark::State& state) {
    codec::frame_header h;
    h.length = static_cast<std::uint64_t>(state.range(0));
    h.masked = state.range(1) != 0;
    h.key = nonzero_key;
    std::array<std::uint8_t, codec::max_header_size> wire{};
    const auto n = codec::encode_header(h, wire);
    const auto local = h.masked ? codec::role::server : codec::role::client;
    const std::span<const std::uint8_t> in(wire.data(), n);
    for (auto _ : state) {
        benchmark::DoNotOptimize(in.data());
        auto r = codec::decode_header(in, local);
        if (r.err != codec::errc::ok) {
            state.SkipWithError("decode_header failed");
            break;
        }
        benchmark::DoNotOptimize(r);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void header_forms(benchmark::internal::Benchmark* b) {
    b->ArgNames({"len", "masked"});
    for (std::int64_t len : {100, 16384, 70000}) {
        for (std::int64_t masked : {0, 1}) {
            b->Args({len, masked});
        }
    }
}

// ---- receive side: frame_decoder::feed ----------------------------------------------------

enum class wire_mask : std::int64_t { none = 0, zero_key = 1, key = 2 };

// One binary frame of frame_payload bytes as the peer would send it.
std::vector<std::uint8_t> make_frame(wire_mask m) {
    codec::frame_header h;
    h.length = frame_payload;
    h.masked = m != wire_mask::none;
    h.key = m == wire_mask::key ? nonzero_key : codec::mask_key{};
    std::array<std::uint8_t, codec::max_header_size> head{};
    const auto n = codec::encode_header(h, head);
    std::vector<std::uint8_t> frame(head.begin(), head.begin() + static_cast<std::ptrdiff_t>(n));
    frame.resize(n + frame_payload, 0xa5);
    if (m == wire_mask::key) {
        codec::apply_mask(std::span(frame).subspan(n), nonzero_key, 0);
    }
    return frame;
}

// Args: {wire_mask, read size}. Each iteration restores the wire bytes (feed works in place)
// and feeds them in reads of `read size` bytes; BM_restore_copy is that copy alone.
void BM_decoder_feed(benchmark::State& state) {
    const auto m = static_cast<wire_mask>(state.range(0));
    const auto chunk = static_cast<std::size_t>(state.range(1));
    const auto wire = make_frame(m);
    std::vector<std::uint8_t> buf(wire.size());
    codec::frame_decoder dec(m == wire_mask::none ? codec::role::client : codec::role::server);
    for (auto _ : state) {
        std::memcpy(buf.data(), wire.data(), wire.size());
        std::size_t payload = 0;
        for (std::size_t off = 0; off < buf.size(); off += chunk) {
            const auto len = std::min(chunk, buf.size() - off);
            auto step = dec.feed(std::span(buf).subspan(off, len));
            payload += step.payload;
        }
        if (payload != frame_payload || !dec.idle()) {
            state.SkipWithError("decoder did not return the whole payload");
            break;
        }
        benchmark::DoNotOptimize(buf.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                            static_cast<std::int64_t>(frame_payload));
}

void BM_restore_copy(benchmark::State& state) {
    const auto wire = make_frame(wire_mask::key);
    std::vector<std::uint8_t> buf(wire.size());
    for (auto _ : state) {
        std::memcpy(buf.data(), wire.data(), wire.size());
        benchmark::DoNotOptimize(buf.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                            static_cast<std::int64_t>(frame_payload));
}

void feed_forms(benchmark::internal::Benchmark* b) {
    b->ArgNames({"mask", "read"});
    for (auto m : {wire_mask::none, wire_mask::zero_key, wire_mask::key}) {
        for (std::int64_t read : {1448, 8192, 1 << 20}) {
            b->Args({static_cast<std::int64_t>(m), read});
        }
    }
}

// ---- send side: frame_encoder::encode ----------------------------------------------------

// Arg: mask_mode of a client (skip, fixed, standard), over a 16 KiB payload masked in place.
void BM_encoder_encode(benchmark::State& state) {
    const auto mode = static_cast<codec::mask_mode>(state.range(0));
    codec::frame_encoder enc(codec::role::client, mode, nonzero_key);
    std::vector<std::uint8_t> payload(frame_payload, 0xa5);
    codec::mask_key frame_key = nonzero_key;
    for (auto _ : state) {
        frame_key[0] = static_cast<std::uint8_t>(frame_key[0] + 1);
        auto head = enc.encode(codec::opcode::binary, payload, frame_key);
        benchmark::DoNotOptimize(head.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                            static_cast<std::int64_t>(frame_payload));
}

// ---- opening handshake ---------------------------------------------------------------------

constexpr std::string_view bench_host = "bench.local";
constexpr std::string_view bench_path = "/ws";
constexpr std::string_view rfc_key = "dGhlIHNhbXBsZSBub25jZQ=="; // RFC 6455 §1.3 sample

std::vector<std::uint8_t> make_request() {
    std::vector<std::uint8_t> out(codec::max_head_size);
    out.resize(codec::encode_request(out, bench_host, bench_path, rfc_key));
    return out;
}

// A request as a browser-ish client sends it: more headers than ours, in another order.
constexpr std::string_view browser_request = "GET /ws HTTP/1.1\r\n"
                                             "Host: bench.local:443\r\n"
                                             "User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
                                             "Accept: */*\r\n"
                                             "Accept-Language: en-US,en;q=0.5\r\n"
                                             "Accept-Encoding: gzip, deflate, br\r\n"
                                             "Sec-WebSocket-Version: 13\r\n"
                                             "Origin: https://bench.local\r\n"
                                             "Sec-WebSocket-Extensions: permessage-deflate\r\n"
                                             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                             "Connection: keep-alive, Upgrade\r\n"
                                             "Pragma: no-cache\r\n"
                                             "Cache-Control: no-cache\r\n"
                                             "Upgrade: websocket\r\n"
                                             "\r\n";

// Arg: 0 = the request kaminaric sends, 1 = a browser-style request.
void BM_parse_request(benchmark::State& state) {
    std::vector<std::uint8_t> req =
        state.range(0) == 0
            ? make_request()
            : std::vector<std::uint8_t>(browser_request.begin(), browser_request.end());
    for (auto _ : state) {
        benchmark::DoNotOptimize(req.data());
        auto r = codec::parse_request(req, bench_host, bench_path);
        if (r.err != codec::errc::ok) {
            state.SkipWithError("parse_request failed");
            break;
        }
        benchmark::DoNotOptimize(r);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                            static_cast<std::int64_t>(req.size()));
}

void BM_make_sec_accept(benchmark::State& state) {
    for (auto _ : state) {
        auto a = codec::make_sec_accept(rfc_key);
        benchmark::DoNotOptimize(a);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_parse_response(benchmark::State& state) {
    std::vector<std::uint8_t> resp(512);
    resp.resize(codec::encode_accept_response(resp, rfc_key));
    for (auto _ : state) {
        benchmark::DoNotOptimize(resp.data());
        auto r = codec::parse_response(resp, rfc_key);
        if (r.err != codec::errc::ok) {
            state.SkipWithError("parse_response failed");
            break;
        }
        benchmark::DoNotOptimize(r);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

} // namespace

BENCHMARK(BM_encode_header)->Apply(header_forms);
BENCHMARK(BM_decode_header)->Apply(header_forms);
BENCHMARK(BM_decoder_feed)->Apply(feed_forms);
BENCHMARK(BM_restore_copy);
BENCHMARK(BM_encoder_encode)->ArgName("mode")->DenseRange(0, 2);
BENCHMARK(BM_parse_request)->ArgName("browser")->DenseRange(0, 1);
BENCHMARK(BM_make_sec_accept);
BENCHMARK(BM_parse_response);

BENCHMARK_MAIN();

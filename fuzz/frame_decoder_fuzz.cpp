// Two checks per input, with the input itself choosing role, mask mode, key and chunk sizes
// (uWS makeChunked style):
//  1. raw bytes fed to the decoder in input-chosen chunks: no crash, payload never exceeds the
//     chunk, errors are sticky;
//  2. round trip: a payload cut into frames by the encoder (every mask mode) and fed back in
//     input-chosen chunks decodes to exactly the payload, whatever the split and key phase.

#include <kaminari/codec/frame_decoder.hpp>
#include <kaminari/codec/frame_encoder.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

using namespace kaminari::codec;

struct reader {
    const std::uint8_t* p;
    std::size_t n;
    std::uint8_t byte() noexcept {
        if (n == 0) {
            return 0;
        }
        --n;
        return *p++;
    }
};

void feed_raw(reader r, role local) {
    frame_decoder dec(local);
    std::vector<std::uint8_t> rest(r.p, r.p + r.n);
    std::size_t pos = 0;
    reader sizes{rest.data(), std::min<std::size_t>(rest.size(), 64)};
    bool failed = false;
    while (pos < rest.size()) {
        const std::size_t chunk = std::min<std::size_t>(1 + sizes.byte() % 97, rest.size() - pos);
        std::vector<std::uint8_t> buf(rest.begin() + static_cast<std::ptrdiff_t>(pos),
                                      rest.begin() + static_cast<std::ptrdiff_t>(pos + chunk));
        const decode_step step = dec.feed(buf);
        if (step.payload > chunk) {
            std::abort();
        }
        if (failed && step.err == errc::ok) {
            std::abort(); // errors are sticky
        }
        failed = failed || step.err != errc::ok;
        pos += chunk;
    }
}

void round_trip(reader r) {
    const auto mode = static_cast<mask_mode>(r.byte() % 3);
    mask_key conn_key{r.byte(), r.byte(), r.byte(), r.byte()};
    frame_encoder enc(role::client, mode, conn_key);
    frame_decoder dec(role::server);

    // The payload: the rest of the input, framed in pieces of input-chosen sizes.
    std::vector<std::uint8_t> payload(r.p, r.p + r.n);
    std::vector<std::uint8_t> wire;
    reader sizes{payload.data(), payload.size()};
    for (std::size_t pos = 0; pos < payload.size();) {
        const std::size_t len =
            std::min<std::size_t>(1 + (sizes.byte() * 131u) % 70000, payload.size() - pos);
        std::vector<std::uint8_t> piece(payload.begin() + static_cast<std::ptrdiff_t>(pos),
                                        payload.begin() + static_cast<std::ptrdiff_t>(pos + len));
        const mask_key frame_key{sizes.byte(), sizes.byte(), 7, 9};
        const auto head = enc.encode(opcode::binary, piece, frame_key);
        wire.insert(wire.end(), head.begin(), head.end());
        wire.insert(wire.end(), piece.begin(), piece.end());
        pos += len;
    }

    std::vector<std::uint8_t> out;
    reader splits{payload.data(), payload.size()};
    for (std::size_t pos = 0; pos < wire.size();) {
        const std::size_t chunk = std::min<std::size_t>(1 + splits.byte() % 300, wire.size() - pos);
        std::vector<std::uint8_t> buf(wire.begin() + static_cast<std::ptrdiff_t>(pos),
                                      wire.begin() + static_cast<std::ptrdiff_t>(pos + chunk));
        const decode_step step = dec.feed(buf);
        if (step.err != errc::ok) {
            std::abort();
        }
        out.insert(out.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(step.payload));
        pos += chunk;
    }
    if (out != payload) {
        std::abort();
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    reader r{data, size};
    const std::uint8_t selector = r.byte();
    if (selector & 1) {
        round_trip(r);
    } else {
        feed_raw(r, (selector & 2) ? role::client : role::server);
    }
    return 0;
}

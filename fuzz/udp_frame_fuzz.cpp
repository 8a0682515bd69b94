// The UDP framing decoder (codec/udp_frame.hpp) on arbitrary stream bytes, as kaminari meets
// them on a `udp` association: decoding must never read past its input, every decoded
// datagram must re-encode to the bytes it came from, and the result must not depend on how
// the stream was split (the first byte picks a chunk size, as uWebSockets' makeChunked does).

#include <kaminari/codec/udp_frame.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

namespace {

using namespace kaminari::codec;

// Decodes all of `in` at once: the datagrams, and whether it ended in a too_large prefix.
std::vector<std::vector<std::uint8_t>> whole(std::span<const std::uint8_t> in, bool& bad) {
    std::vector<std::vector<std::uint8_t>> out;
    bad = false;
    for (;;) {
        const auto r = decode_udp_frame(in);
        if (r.status == udp_frame_status::too_large) {
            bad = true;
            return out;
        }
        if (r.status == udp_frame_status::need_more) {
            if (r.size <= in.size() || r.size > max_udp_frame) {
                std::abort(); // need_more must ask for more than is there, and no more than a frame
            }
            return out;
        }
        if (r.size != udp_header_size + r.datagram.size() || r.size > in.size() ||
            r.datagram.data() != in.data() + udp_header_size) {
            std::abort();
        }
        std::vector<std::uint8_t> again(r.size);
        if (encode_udp_frame(r.datagram, again) != r.size ||
            !std::equal(again.begin(), again.end(), in.begin())) {
            std::abort();
        }
        out.emplace_back(r.datagram.begin(), r.datagram.end());
        in = in.subspan(r.size);
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    const std::size_t chunk = std::size_t{data[0]} + 1;
    const std::span<const std::uint8_t> in(data + 1, size - 1);
    bool bad = false;
    const auto want = whole(in, bad);

    // The same stream fed `chunk` bytes at a time into a reassembly buffer, as net/ does.
    std::vector<std::uint8_t> buf;
    std::vector<std::vector<std::uint8_t>> got;
    bool got_bad = false;
    for (std::size_t at = 0; at < in.size() && !got_bad; at += chunk) {
        const auto piece = in.subspan(at, std::min(chunk, in.size() - at));
        buf.insert(buf.end(), piece.begin(), piece.end());
        std::size_t used = 0;
        for (;;) {
            const auto r = decode_udp_frame(std::span(buf).subspan(used));
            if (r.status == udp_frame_status::too_large) {
                got_bad = true;
                break;
            }
            if (r.status == udp_frame_status::need_more) {
                break;
            }
            got.emplace_back(r.datagram.begin(), r.datagram.end());
            used += r.size;
        }
        buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(used));
    }
    if (got != want || got_bad != bad) {
        std::abort();
    }
    return 0;
}

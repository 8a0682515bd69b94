// Three checks per input, with the input itself choosing the chunk sizes (uWS makeChunked
// style):
//  1. raw bytes fed to the Mux.Cool parser in input-chosen chunks: no crash, every step
//     consumes within its input and at least one byte until an error, data never exceeds the
//     frame's length, errors are sticky; and detect() on every prefix never says `mux` for a
//     stream whose first frame the parser rejects;
//  2. detect() is monotonic: once a prefix is decided, longer prefixes keep the verdict; a
//     prefix of End frames only (only_leading_ends()) is undecided;
//  3. round trip: frames built by the encoders from the input, parsed back at input-chosen
//     splits, give the same sessions, statuses and payload.

#include <kaminari/codec/mux_cool.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

namespace {

using namespace kaminari::codec::mux;

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

void feed_raw(const std::uint8_t* data, std::size_t size) {
    parser p;
    reader sizes{data, std::min<std::size_t>(size, 64)};
    bool failed = false;
    bool first_frame_ok = false;
    std::size_t remaining = 0; // payload of the current frame still expected
    for (std::size_t pos = 0; pos < size;) {
        const std::size_t chunk = std::min<std::size_t>(1 + sizes.byte() % 61, size - pos);
        std::span<const std::uint8_t> in(data + pos, chunk);
        pos += chunk;
        while (!in.empty()) {
            const parse_step step = p.feed(in);
            if (step.consumed > in.size()) {
                std::abort();
            }
            if (step.err != error::ok) {
                failed = true;
                if (step.consumed != 0 && p.feed(in).consumed != 0) {
                    std::abort(); // after an error nothing more is consumed
                }
                break;
            }
            if (failed || step.consumed == 0) {
                std::abort(); // errors are sticky; progress until one
            }
            if (step.ev == event::frame) {
                first_frame_ok = true;
                remaining = p.meta().has_data() ? p.meta().length : 0;
                if (p.meta().addr_size > p.meta().addr.size()) {
                    std::abort();
                }
            } else if (step.ev == event::data) {
                if (step.consumed > remaining) {
                    std::abort();
                }
                remaining -= step.consumed;
            }
            if (p.data_remaining() != remaining) {
                std::abort();
            }
            in = in.subspan(step.consumed);
        }
        if (failed) {
            break;
        }
    }
    // detect() says `mux` only for a stream whose first frame's meta the parser accepts.
    if (detect({data, size}) == verdict::mux && failed && !first_frame_ok) {
        std::abort();
    }
}

constexpr std::size_t max_detect = max_leading_ends * end_frame_size + 266;

void detect_monotonic(const std::uint8_t* data, std::size_t size) {
    verdict decided = verdict::need_more;
    for (std::size_t n = 0; n <= std::min<std::size_t>(size, max_detect); ++n) {
        const verdict v = detect({data, n});
        if (decided != verdict::need_more && v != decided) {
            std::abort();
        }
        // End frames only: still undecided (serve_if_mux() takes them as Mux.Cool only when
        // waiting longer is pointless).
        if (only_leading_ends({data, n}) && v != verdict::need_more) {
            std::abort();
        }
        decided = v;
    }
    // A verdict needs at most 32 End frames and a New head.
    if (size >= max_detect && detect({data, size}) == verdict::need_more) {
        std::abort();
    }
}

struct sent {
    std::uint16_t id;
    status st;
    std::vector<std::uint8_t> payload;
};

void round_trip(reader r) {
    std::vector<std::uint8_t> wire;
    std::vector<sent> frames;
    while (r.n != 0 && frames.size() < 64) {
        const std::uint8_t kind = r.byte();
        const auto id = static_cast<std::uint16_t>(r.byte() << 8 | r.byte());
        const std::size_t len = std::min<std::size_t>(r.byte() * 5u, r.n);
        std::vector<std::uint8_t> body(r.p, r.p + len);
        r.p += len;
        r.n -= len;
        switch (kind % 4) {
        case 0: {
            std::array<std::uint8_t, max_new_head_size> head{};
            const std::uint8_t name[] = {'e', 'x', '.', 'o', 'r', 'g'};
            const std::uint8_t v4[] = {127, 0, 0, 1};
            const bool domain = (kind & 4) != 0;
            const std::size_t n = encode_new_head(
                head, id, (kind & 8) ? network::udp : network::tcp, id,
                domain ? address_type::domain : address_type::ipv4,
                domain ? std::span<const std::uint8_t>(name) : std::span<const std::uint8_t>(v4),
                static_cast<std::uint16_t>(body.size()));
            wire.insert(wire.end(), head.begin(), head.begin() + static_cast<std::ptrdiff_t>(n));
            wire.insert(wire.end(), body.begin(), body.end());
            frames.push_back({id, status::new_session, body});
            break;
        }
        case 1:
        case 2: {
            std::array<std::uint8_t, keep_head_size> head{};
            encode_keep_head(head, id, static_cast<std::uint16_t>(body.size()));
            wire.insert(wire.end(), head.begin(), head.end());
            wire.insert(wire.end(), body.begin(), body.end());
            frames.push_back({id, status::keep, body});
            break;
        }
        default: {
            std::array<std::uint8_t, end_frame_size> end{};
            encode_end(end, id, (kind & 4) != 0);
            wire.insert(wire.end(), end.begin(), end.end());
            frames.push_back({id, status::end, {}});
            break;
        }
        }
    }

    parser p;
    std::vector<sent> got;
    reader splits{wire.data(), wire.size()};
    for (std::size_t pos = 0; pos < wire.size();) {
        const std::size_t chunk = std::min<std::size_t>(1 + splits.byte() % 300, wire.size() - pos);
        std::span<const std::uint8_t> in(wire.data() + pos, chunk);
        pos += chunk;
        while (!in.empty()) {
            const parse_step step = p.feed(in);
            if (step.err != error::ok) {
                std::abort();
            }
            if (step.ev == event::frame) {
                got.push_back({p.meta().id, p.meta().st, {}});
            } else if (step.ev == event::data) {
                got.back().payload.insert(got.back().payload.end(), in.begin(),
                                          in.begin() + static_cast<std::ptrdiff_t>(step.consumed));
            }
            in = in.subspan(step.consumed);
        }
    }
    if (!p.idle() || got.size() != frames.size()) {
        std::abort();
    }
    for (std::size_t i = 0; i < got.size(); ++i) {
        if (got[i].id != frames[i].id || got[i].st != frames[i].st ||
            got[i].payload != frames[i].payload) {
            std::abort();
        }
    }
    if (!frames.empty() && frames[0].st == status::new_session && detect(wire) != verdict::mux) {
        std::abort(); // our own New frames are recognised
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    if (data[0] & 1) {
        round_trip(reader{data + 1, size - 1});
    } else {
        feed_raw(data + 1, size - 1);
        detect_monotonic(data + 1, size - 1);
    }
    return 0;
}

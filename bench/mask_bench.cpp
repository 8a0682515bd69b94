// Masking throughput (RFC 6455 §5.3) by payload size and buffer alignment, against memcpy of
// the same number of bytes: masking is a read-modify-write pass over the buffer, so memcpy is
// the speed it should reach.
//
//   mask_bench --benchmark_format=json > mask.json

#include <kaminari/codec/mask.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace {

using kaminari::codec::apply_mask;
using kaminari::codec::mask_key;

constexpr std::size_t min_size = 64;
constexpr std::size_t max_size = 1 << 20;
constexpr std::size_t max_offset = 64;

// A buffer aligned to 64 bytes (std::vector<uint8_t> gives 16), plus room for the offset.
struct aligned_buffer {
    explicit aligned_buffer(std::size_t n)
        : storage(n + 2 * max_offset, 0x5a) {}

    std::uint8_t* at(std::size_t offset) {
        auto base = reinterpret_cast<std::uintptr_t>(storage.data());
        auto aligned = (base + max_offset - 1) & ~(std::uintptr_t{max_offset} - 1);
        return storage.data() + (aligned - base) + offset;
    }

    std::vector<std::uint8_t> storage;
};

// Args: {payload size, offset of the payload from a 64-byte boundary}.
void BM_apply_mask(benchmark::State& state) {
    const auto size = static_cast<std::size_t>(state.range(0));
    const auto offset = static_cast<std::size_t>(state.range(1));
    aligned_buffer buf(size);
    std::span<std::uint8_t> data(buf.at(offset), size);
    const mask_key key{0x37, 0xfa, 0x21, 0x3d};
    std::size_t phase = 0;
    for (auto _ : state) {
        phase = apply_mask(data, key, phase);
        benchmark::DoNotOptimize(data.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                            static_cast<std::int64_t>(size));
}

// A payload masked in two pieces split at an odd point: the second call starts at phase 3.
void BM_apply_mask_split(benchmark::State& state) {
    const auto size = static_cast<std::size_t>(state.range(0));
    aligned_buffer buf(size);
    std::span<std::uint8_t> data(buf.at(0), size);
    const mask_key key{0x37, 0xfa, 0x21, 0x3d};
    const std::size_t cut = size / 2 + 3;
    for (auto _ : state) {
        auto phase = apply_mask(data.first(cut), key, 0);
        benchmark::DoNotOptimize(apply_mask(data.subspan(cut), key, phase));
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                            static_cast<std::int64_t>(size));
}

// The reference row: copying the same number of bytes between two buffers at the same offset.
void BM_memcpy(benchmark::State& state) {
    const auto size = static_cast<std::size_t>(state.range(0));
    const auto offset = static_cast<std::size_t>(state.range(1));
    aligned_buffer src(size);
    aligned_buffer dst(size);
    for (auto _ : state) {
        std::memcpy(dst.at(offset), src.at(offset), size);
        benchmark::DoNotOptimize(dst.at(offset));
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                            static_cast<std::int64_t>(size));
}

void size_and_alignment(benchmark::internal::Benchmark* b) {
    b->ArgNames({"bytes", "offset"});
    for (std::size_t size = min_size; size <= max_size; size *= 4) {
        for (std::size_t offset : {0, 1, 3, 8}) {
            b->Args({static_cast<std::int64_t>(size), static_cast<std::int64_t>(offset)});
        }
    }
}

} // namespace

BENCHMARK(BM_memcpy)->Apply(size_and_alignment);
BENCHMARK(BM_apply_mask)->Apply(size_and_alignment);
BENCHMARK(BM_apply_mask_split)->ArgName("bytes")->RangeMultiplier(4)->Range(min_size, max_size);

BENCHMARK_MAIN();

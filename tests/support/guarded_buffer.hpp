#pragma once

// Places test input right before an inaccessible page (picohttpparser test.c), so a parser
// that reads even one byte past the end of its input crashes the test instead of passing.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string_view>
#include <sys/mman.h>
#include <unistd.h>

namespace kaminari::test {

/// Owns two mappings: a read/write area followed by a PROT_NONE page. Not copyable.
class guarded_buffer {
public:
    /// Room for inputs of up to `capacity` bytes.
    explicit guarded_buffer(std::size_t capacity) {
        const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
        usable_ = (capacity + page - 1) / page * page;
        size_ = usable_ + page;
        void* p = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            throw std::runtime_error("guarded_buffer: mmap failed");
        }
        base_ = static_cast<std::uint8_t*>(p);
        if (mprotect(base_ + usable_, page, PROT_NONE) != 0) {
            munmap(base_, size_);
            throw std::runtime_error("guarded_buffer: mprotect failed");
        }
    }
    guarded_buffer(const guarded_buffer&) = delete;
    guarded_buffer& operator=(const guarded_buffer&) = delete;
    ~guarded_buffer() { munmap(base_, size_); }

    /// Copies `bytes` so that they end exactly at the guard page; returns the copy (mutable,
    /// valid until the next place()). Precondition: bytes.size() <= capacity.
    std::span<std::uint8_t> place(std::span<const std::uint8_t> bytes) {
        std::uint8_t* at = base_ + usable_ - bytes.size();
        if (!bytes.empty()) {
            std::memcpy(at, bytes.data(), bytes.size());
        }
        return {at, bytes.size()};
    }
    std::span<std::uint8_t> place(std::string_view text) {
        return place({reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
    }

private:
    std::uint8_t* base_ = nullptr;
    std::size_t usable_ = 0;
    std::size_t size_ = 0;
};

} // namespace kaminari::test

#include "kaminari/net/buffer_pool.hpp"

#include <array>

namespace kaminari::net {

namespace {

// One free list per size class. Enough to serve bursts of busy connections without going to
// the allocator on every read, small enough that an idle process stays lean: at most about
// 1 + 1 + 2 MiB of free buffers per thread.
struct size_class {
    std::size_t size;
    std::size_t max_free;
};
constexpr std::array<size_class, 3> classes{{
    {16 * 1024, 64},
    {64 * 1024, 16},
    {256 * 1024, 8},
}};

struct pool {
    std::array<std::vector<std::unique_ptr<std::uint8_t[]>>, classes.size()> free;
};

pool& local_pool() {
    thread_local pool p;
    return p;
}

// The class of `size`, or classes.size() for a size that is not pooled.
std::size_t class_of(std::size_t size) noexcept {
    for (std::size_t i = 0; i < classes.size(); ++i) {
        if (classes[i].size == size) {
            return i;
        }
    }
    return classes.size();
}

} // namespace

void buffer_lease::release() noexcept {
    if (!data_) {
        return;
    }
    const std::size_t c = class_of(size_);
    if (c < classes.size()) {
        auto& list = local_pool().free[c];
        if (list.size() < classes[c].max_free) {
            try {
                list.push_back(std::move(data_));
            } catch (...) {
            }
        }
    }
    data_.reset();
}

buffer_lease borrow_buffer(std::size_t size) {
    buffer_lease lease;
    const std::size_t c = class_of(size);
    if (c < classes.size() && !local_pool().free[c].empty()) {
        auto& list = local_pool().free[c];
        lease.data_ = std::move(list.back());
        list.pop_back();
    } else {
        lease.data_ = std::make_unique_for_overwrite<std::uint8_t[]>(size);
    }
    lease.size_ = size;
    return lease;
}

} // namespace kaminari::net

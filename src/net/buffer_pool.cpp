#include "kaminari/net/buffer_pool.hpp"

#include <algorithm>

namespace kaminari::net {

namespace {

// Enough to serve bursts of busy connections without returning memory to the allocator on
// every write, small enough that an idle process stays lean.
constexpr std::size_t max_free = 64;

struct pool {
    std::size_t size = 0; // all buffers in one pool have the same size
    std::vector<std::unique_ptr<std::uint8_t[]>> free;
};

pool& local_pool() {
    thread_local pool p;
    return p;
}

} // namespace

void buffer_lease::release() noexcept {
    if (!data_) {
        return;
    }
    pool& p = local_pool();
    if (p.size == size_ && p.free.size() < max_free) {
        try {
            p.free.push_back(std::move(data_));
        } catch (...) {
        }
    }
    data_.reset();
}

buffer_lease borrow_buffer(std::size_t size) {
    pool& p = local_pool();
    buffer_lease lease;
    if (p.size != size) {
        p.free.clear();
        p.size = size;
    }
    if (!p.free.empty()) {
        lease.data_ = std::move(p.free.back());
        p.free.pop_back();
    } else {
        lease.data_ = std::make_unique_for_overwrite<std::uint8_t[]>(size);
        if (p.free.capacity() < max_free) {
            p.free.reserve(max_free);
        }
    }
    lease.size_ = size;
    return lease;
}

std::size_t pooled_buffers() noexcept {
    return local_pool().free.size();
}

} // namespace kaminari::net

#pragma once

// Per-thread pool of relay buffers. A relay direction borrows a buffer only once its source is
// readable and gives it back after the write, so an idle connection holds no payload buffer.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace kaminari::net {

/// A buffer borrowed from the calling thread's pool; returned when the lease is destroyed.
/// A lease must be destroyed on the thread that took it (connections never change threads).
class buffer_lease {
public:
    buffer_lease() = default;
    buffer_lease(buffer_lease&& other) noexcept
        : data_(std::move(other.data_))
        , size_(other.size_) {}
    buffer_lease& operator=(buffer_lease&& other) noexcept {
        release();
        data_ = std::move(other.data_);
        size_ = other.size_;
        return *this;
    }
    buffer_lease(const buffer_lease&) = delete;
    buffer_lease& operator=(const buffer_lease&) = delete;
    ~buffer_lease() { release(); }

    std::span<std::uint8_t> span() const noexcept { return {data_.get(), size_}; }
    explicit operator bool() const noexcept { return data_ != nullptr; }

    /// Gives the buffer back to the pool now.
    void release() noexcept;

private:
    friend buffer_lease borrow_buffer(std::size_t size);
    std::unique_ptr<std::uint8_t[]> data_;
    std::size_t size_ = 0;
};

/// Borrows a buffer of exactly `size` bytes from this thread's pool (allocating when empty).
/// Sizes of 16, 64 and 256 KiB are pooled, each with a bounded number of free buffers; other
/// sizes are allocated and freed every time.
buffer_lease borrow_buffer(std::size_t size);

} // namespace kaminari::net

#include "kaminari/net/udp.hpp"

#include <kaminari/log.hpp>

#include <fmt/format.h>

#include <chrono>
#include <fstream>
#include <sys/socket.h>

namespace kaminari::net {

namespace {

std::atomic<std::size_t> open_associations{0};
std::atomic<std::int64_t> last_cap_log_ms{0};

int sysctl_int(const char* path, int fallback) noexcept {
    try {
        std::ifstream in(path);
        long long v = 0;
        if (in >> v && v > 0) {
            return static_cast<int>(std::min<long long>(v, 1LL << 30));
        }
    } catch (...) {
    }
    return fallback;
}

} // namespace

void tune_udp_socket(asio::ip::udp::socket& s) noexcept {
    // Read once: the limits are the host's, not the socket's.
    static const int rcv = sysctl_int("/proc/sys/net/core/rmem_max", 4 << 20);
    static const int snd = sysctl_int("/proc/sys/net/core/wmem_max", 4 << 20);
    const int fd = s.native_handle();
    (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd);
}

bool claim_udp_association() noexcept {
    std::size_t now = open_associations.load(std::memory_order_relaxed);
    do {
        if (now >= max_udp_associations) {
            using namespace std::chrono;
            const auto ms =
                duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
            auto last = last_cap_log_ms.load(std::memory_order_relaxed);
            if (ms - last >= 1000 && last_cap_log_ms.compare_exchange_strong(last, ms)) {
                log::warn("udp: {} associations open, the most one process keeps; refusing new "
                          "ones until one ends",
                          max_udp_associations);
            }
            return false;
        }
    } while (!open_associations.compare_exchange_weak(now, now + 1, std::memory_order_relaxed));
    return true;
}

void release_udp_association() noexcept {
    open_associations.fetch_sub(1, std::memory_order_relaxed);
}

std::size_t udp_associations() noexcept {
    return open_associations.load(std::memory_order_relaxed);
}

std::string to_string(const asio::ip::udp::endpoint& ep) {
    const auto a = ep.address();
    return a.is_v6() ? fmt::format("[{}]:{}", a.to_string(), ep.port())
                     : fmt::format("{}:{}", a.to_string(), ep.port());
}

} // namespace kaminari::net

#include "kaminari/net/socket_options.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <utility>

namespace kaminari::net {

namespace {

void tune(int fd, bool keepalive) noexcept {
    const int on = 1;
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    if (!keepalive) {
        return;
    }
    (void)::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    for (const auto& [opt, value] :
         {std::pair{TCP_KEEPIDLE, keepalive_idle_s}, std::pair{TCP_KEEPINTVL, keepalive_interval_s},
          std::pair{TCP_KEEPCNT, keepalive_probes}}) {
        (void)::setsockopt(fd, IPPROTO_TCP, opt, &value, sizeof value);
    }
}

} // namespace

void tune_socket(asio::ip::tcp::socket& socket, bool keepalive) noexcept {
    if (socket.is_open()) {
        tune(socket.native_handle(), keepalive);
    }
}

bool on_this_host(const asio::ip::address& a) noexcept {
    if (a.is_v6() && a.to_v6().is_v4_mapped()) {
        return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).is_loopback();
    }
    return a.is_loopback();
}

void tune_dialed(asio::ip::tcp::socket& socket, const asio::ip::tcp::endpoint& remote) noexcept {
    tune_socket(socket, !on_this_host(remote.address()));
}

std::optional<quiet_time> quiet_times(asio::ip::tcp::socket& s) noexcept {
    if (!s.is_open()) {
        return std::nullopt;
    }
    ::tcp_info info{};
    socklen_t len = sizeof info;
    if (::getsockopt(s.native_handle(), IPPROTO_TCP, TCP_INFO, &info, &len) != 0) {
        return std::nullopt;
    }
    return quiet_time{info.tcpi_last_data_recv, info.tcpi_last_data_sent};
}

void tune_listener(asio::ip::tcp::acceptor& acceptor) noexcept {
    if (acceptor.is_open()) {
        tune(acceptor.native_handle(), true);
    }
}

} // namespace kaminari::net

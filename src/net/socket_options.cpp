#include "kaminari/net/socket_options.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <utility>

namespace kaminari::net {

void tune_socket(asio::ip::tcp::socket& socket) noexcept {
    error_code ignored;
    socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    socket.set_option(asio::socket_base::keep_alive(true), ignored);
    if (!socket.is_open()) {
        return;
    }
    const int fd = socket.native_handle();
    for (const auto& [opt, value] :
         {std::pair{TCP_KEEPIDLE, keepalive_idle_s}, std::pair{TCP_KEEPINTVL, keepalive_interval_s},
          std::pair{TCP_KEEPCNT, keepalive_probes}}) {
        (void)::setsockopt(fd, IPPROTO_TCP, opt, &value, sizeof value);
    }
}

} // namespace kaminari::net

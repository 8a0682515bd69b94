#include "kaminari/net/listener.hpp"

#include <kaminari/error.hpp>
#include <kaminari/log.hpp>
#include <kaminari/net/metrics.hpp>
#include <kaminari/net/socket_options.hpp>
#include <kaminari/net/splice.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <fmt/format.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <exception>
#include <fcntl.h>
#include <memory>
#include <mutex>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <optional>
#include <string>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <utility>

namespace kaminari::net {

namespace {

// How many connections may wait for accept() with their SYN data (TCP_FASTOPEN's queue).
constexpr int fast_open_queue = 4096;

// Whether the kernel accepts TCP Fast Open on listening sockets (bit 2 of
// net.ipv4.tcp_fastopen, or 0x400 to accept it from any socket without TCP_FASTOPEN).
bool kernel_accepts_fast_open() {
    std::FILE* f = std::fopen("/proc/sys/net/ipv4/tcp_fastopen", "r");
    if (f == nullptr) {
        return false;
    }
    int mode = 0;
    const bool read = std::fscanf(f, "%i", &mode) == 1;
    std::fclose(f);
    return read && (mode & 0x402) != 0;
}

} // namespace

std::vector<asio::ip::tcp::acceptor> bind_listeners(asio::io_context& ctx, const endpoint& local,
                                                    bool fast_open) {
    if (fast_open && !kernel_accepts_fast_open()) {
        log::info("tfo: this kernel does not accept TCP Fast Open connections "
                  "(net.ipv4.tcp_fastopen lacks bit 2); connections open without it");
    }
    using tcp = asio::ip::tcp;
    std::vector<tcp::endpoint> addrs;
    error_code ec;
    const auto literal = asio::ip::make_address(local.host, ec);
    if (!ec) {
        addrs.emplace_back(literal, local.port);
    } else {
        tcp::resolver resolver(ctx);
        auto results =
            resolver.resolve(local.host, std::to_string(local.port),
                             tcp::resolver::passive | tcp::resolver::numeric_service, ec);
        if (ec) {
            throw startup_error(
                fmt::format("listen: cannot resolve '{}': {}", local.to_string(), ec.message()));
        }
        for (const auto& r : results) {
            if (std::find(addrs.begin(), addrs.end(), r.endpoint()) == addrs.end()) {
                addrs.push_back(r.endpoint());
            }
        }
    }
    std::vector<tcp::acceptor> listeners;
    std::string failures;
    for (const auto& addr : addrs) {
        tcp::acceptor acc(ctx);
        const auto fail = [&](const char* what) {
            failures += fmt::format("{}{} {}: {}", failures.empty() ? "" : "; ", what,
                                    addr.address().to_string(), ec.message());
        };
        acc.open(addr.protocol(), ec);
        if (ec) {
            fail("open");
            continue;
        }
        acc.set_option(tcp::acceptor::reuse_address(true), ec);
        if (addr.address().is_v6()) {
            // "[::]:p" serves IPv4 too, as most servers do; a name resolving to both families
            // binds each family on its own socket.
            acc.set_option(asio::ip::v6_only(addrs.size() > 1), ec);
        }
        acc.bind(addr, ec);
        if (ec) {
            fail("bind");
            continue;
        }
        // Accepted sockets inherit these: no setsockopt per connection.
        tune_listener(acc);
        if (fast_open) {
            // Silently without where the kernel refuses it: a plain listener still serves.
            (void)::setsockopt(acc.native_handle(), IPPROTO_TCP, TCP_FASTOPEN, &fast_open_queue,
                               sizeof fast_open_queue);
        }
        acc.listen(asio::socket_base::max_listen_connections, ec);
        if (ec) {
            fail("listen");
            continue;
        }
        listeners.push_back(std::move(acc));
    }
    if (listeners.empty()) {
        throw startup_error(
            fmt::format("listen: cannot listen on {}: {}", local.to_string(), failures));
    }
    return listeners;
}

namespace {

// At most one log line per second for a repeating condition, with the count of the ones held
// back: a flood of failures or refusals must not flood the log too. Shared by the accept loops
// of every worker, so a burst is one line whichever worker meets it.
class burst_log {
public:
    // Returns the suffix to log now, or nullopt to stay quiet this time.
    std::optional<std::string> next() {
        const auto now = std::chrono::steady_clock::now();
        std::lock_guard lock(mutex_);
        if (logged_ && now - last_ < std::chrono::seconds(1)) {
            ++suppressed_;
            return std::nullopt;
        }
        std::string suffix =
            suppressed_ ? fmt::format(" ({} more since last report)", suppressed_) : std::string();
        logged_ = true;
        last_ = now;
        suppressed_ = 0;
        return suffix;
    }

private:
    std::mutex mutex_;
    bool logged_ = false;
    std::chrono::steady_clock::time_point last_{};
    std::uint64_t suppressed_ = 0;
};

struct accept_logs {
    burst_log errors;
    burst_log refusals;
};

// The connections one worker runs, for the turns at the listening socket; a cache line each,
// since each worker writes its own on every connection.
struct alignas(64) worker_load {
    std::atomic<std::size_t> connections{0};
};
using worker_loads = std::vector<worker_load>;

// Whether worker `i` runs more connections than some other worker.
bool busier_than_another(const worker_loads& loads, std::size_t i) {
    const std::size_t mine = loads[i].connections.load(std::memory_order_relaxed);
    for (std::size_t j = 0; j < loads.size(); ++j) {
        if (j != i && loads[j].connections.load(std::memory_order_relaxed) < mine) {
            return true;
        }
    }
    return false;
}

std::atomic<std::uint64_t> next_id{0};

} // namespace

std::uint64_t new_connection_id() noexcept {
    return next_id.fetch_add(1, std::memory_order_relaxed) + 1;
}

namespace {

// One registration of a descriptor in an epoll set, as /proc/self/fdinfo shows it.
struct epoll_entry {
    int epoll_fd = -1;
    std::uint32_t events = 0;
    std::uint64_t data = 0;
};

// The epoll sets of this process that hold `fd` (from /proc/self/fdinfo of every eventpoll
// descriptor: lines "tfd: FD events: HEX data: HEX ...").
std::vector<epoll_entry> epoll_entries_of(int fd) {
    std::vector<epoll_entry> found;
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) {
        return found;
    }
    while (const dirent* e = ::readdir(dir)) {
        char link[64];
        const std::string path = fmt::format("/proc/self/fd/{}", e->d_name);
        const ssize_t n = ::readlink(path.c_str(), link, sizeof link - 1);
        if (n <= 0 ||
            std::string_view(link, static_cast<std::size_t>(n)) != "anon_inode:[eventpoll]") {
            continue;
        }
        const int epfd = std::atoi(e->d_name);
        std::FILE* f = std::fopen(fmt::format("/proc/self/fdinfo/{}", epfd).c_str(), "r");
        if (f == nullptr) {
            continue;
        }
        char line[256];
        while (std::fgets(line, sizeof line, f) != nullptr) {
            int tfd = -1;
            unsigned events = 0;
            unsigned long long data = 0;
            if (std::sscanf(line, "tfd: %d events: %x data: %llx", &tfd, &events, &data) == 3 &&
                tfd == fd) {
                found.push_back({epfd, events, data});
            }
        }
        std::fclose(f);
    }
    ::closedir(dir);
    return found;
}

// What became of a worker's registration of the listening socket when it was made again.
enum class registration { exclusive, plain, none };

// A worker's registration of a listening socket, made again with EPOLLEXCLUSIVE.
class exclusive_registration {
public:
    exclusive_registration(int epoll_fd, int fd, std::uint32_t asio_events, std::uint64_t data)
        : epoll_fd_(epoll_fd)
        , fd_(fd)
        , asio_events_(asio_events)
        , data_(data) {}

    // Registers the socket in this worker's epoll set (after a DEL) with EPOLLEXCLUSIVE: the
    // kernel puts the registration at the back of the socket's wait queue. Where the kernel
    // refuses the flag, asio's registration is made again instead (plain); none when neither
    // can be made (out of memory, or of epoll watches).
    registration add() const noexcept {
        if (add(exclusive_events())) {
            return registration::exclusive;
        }
        return add(asio_events_) ? registration::plain : registration::none;
    }

    // Moves this worker behind the others in the socket's wait queue, where the kernel looks
    // last for a worker to wake: the next connection goes to another worker that waits.
    registration to_back() const noexcept {
        if (::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd_, nullptr) != 0) {
            return registration::exclusive; // still there, as it was
        }
        return add();
    }

private:
    // Asio's events less EPOLLPRI, which EPOLLEXCLUSIVE does not allow (a listening socket
    // never raises it).
    std::uint32_t exclusive_events() const noexcept {
        return (asio_events_ & ~static_cast<std::uint32_t>(EPOLLPRI)) | EPOLLEXCLUSIVE;
    }
    bool add(std::uint32_t events) const noexcept {
        epoll_event ev{};
        ev.events = events;
        ev.data.u64 = data_;
        return ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd_, &ev) == 0;
    }

    int epoll_fd_;
    int fd_;
    std::uint32_t asio_events_;
    std::uint64_t data_;
};

// A connection arriving on a listening socket that N workers wait on wakes all N (each has the
// socket in its own epoll set), and N-1 of them find nothing to accept: at one connection at a
// time that is a wasted wake-up, accept (EAGAIN) and return to epoll_wait per worker, about a
// tenth of a relay's CPU per connection. Asio registers the socket without EPOLLEXCLUSIVE, so
// this re-registers it with that flag, same events (less EPOLLPRI) and same data: the kernel
// then wakes one waiting worker per connection, and every worker only while none waits.
// EPOLLEXCLUSIVE refuses EPOLL_CTL_MOD, which asio never issues for the acceptor: it accepts
// speculatively (an accept before any wait) and waits only for reading, which is registered
// from the start; nothing may call async_wait() or set a non-speculative operation on it.
// Where the kernel lacks EPOLLEXCLUSIVE (before 4.5) or /proc is not mounted, the registration
// stays as asio made it (nullopt).
std::optional<exclusive_registration> wake_one_worker_per_connection(int fd) {
    const auto entries = epoll_entries_of(fd);
    if (entries.size() != 1) {
        log::debug("listen: the listening socket stays without EPOLLEXCLUSIVE ({} registrations)",
                   entries.size());
        return std::nullopt;
    }
    const auto& e = entries.front();
    exclusive_registration reg(e.epoll_fd, fd, e.events, e.data);
    if (::epoll_ctl(e.epoll_fd, EPOLL_CTL_DEL, fd, nullptr) != 0) {
        log::debug("listen: the listening socket stays without EPOLLEXCLUSIVE: {}",
                   std::strerror(errno));
        return std::nullopt;
    }
    switch (reg.add()) {
    case registration::exclusive:
        return reg;
    case registration::plain:
        log::debug("listen: the kernel refuses EPOLLEXCLUSIVE: {}", std::strerror(errno));
        return std::nullopt;
    case registration::none:
        break;
    }
    throw startup_error(fmt::format("listen: cannot register the listening socket again: {}",
                                    std::strerror(errno)));
}

// Accepts on one worker and runs each connection on that same worker: no connection crosses
// threads.
asio::awaitable<void> accept_loop(asio::ip::tcp::acceptor acceptor, runtime& rt,
                                  const connection_handler& handler, std::size_t max_conns,
                                  std::shared_ptr<accept_logs> logs,
                                  std::optional<exclusive_registration> exclusive,
                                  std::shared_ptr<worker_loads> loads, std::size_t worker) {
    const auto exec = acceptor.get_executor();
    asio::steady_timer backoff(exec);
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
        if (ec == asio::error::operation_aborted) {
            co_return;
        }
        if (ec) {
            // EMFILE, ENFILE, ENOBUFS, ...: the connection stays in the backlog; wait for
            // descriptors to free up instead of spinning or exiting. This worker's spare pipes
            // go first: descriptors for connections rather than for their speed (a running
            // splice relay that finds no pipe copies through a buffer instead).
            if (ec == asio::error::no_descriptors || ec.value() == ENFILE) {
                release_spare_pipes();
            }
            if (auto more = logs->errors.next()) {
                log::warn("accept failed: {}{}; retrying in 100 ms", ec.message(), *more);
            }
            backoff.expires_after(std::chrono::milliseconds(100));
            co_await backoff.async_wait(use_tuple);
            continue;
        }
        if (!rt.begin_connection(max_conns)) {
            metrics::add(metrics::refused);
            // At the cap: refuse now (the client reads end of stream at once) rather than
            // leave it in the backlog, where it would wait with no answer.
            if (auto more = logs->refusals.next()) {
                log::warn("max_conns={} reached: closing new connections{}", max_conns, *more);
            }
            error_code ignored;
            socket.close(ignored);
            continue;
        }
        // TCP_NODELAY and keepalive came with the socket: it inherits the listener's options.
        metrics::add(metrics::accepted);
        std::atomic<std::size_t>& load = (*loads)[worker].connections;
        load.fetch_add(1, std::memory_order_relaxed);
        const std::uint64_t id = new_connection_id();
        std::optional<asio::awaitable<void>> connection;
        try {
            connection.emplace(handler(std::move(socket), id));
        } catch (const std::exception& ex) {
            // No coroutine frame (bad_alloc): only this connection is lost, not the listener.
            load.fetch_sub(1, std::memory_order_relaxed);
            rt.end_connection();
            log::error("#{} cannot start: {}", id, ex.what());
            continue;
        }
        asio::co_spawn(exec, std::move(*connection), [id, &rt, &load, loads](std::exception_ptr e) {
            load.fetch_sub(1, std::memory_order_relaxed);
            rt.end_connection();
            if (e) {
                log::error("#{} connection ended by exception: {}", id, log::what(e));
            }
        });
        // The kernel wakes the first worker that waits in the socket's wait queue. A worker
        // that now runs more connections than another goes to the back of it, so connections
        // that come one at a time (long-lived tunnels opened one after another) are spread
        // over the workers, at most one apart, instead of all going to the one registered first
        // whenever it is free. (After the connection has started: its first bytes go first.)
        if (exclusive && busier_than_another(*loads, worker)) {
            registration now = exclusive->to_back();
            if (now == registration::none) {
                log::error("listen: a worker lost its place on the listening socket: {}; "
                           "retrying every 100 ms",
                           std::strerror(errno));
            }
            while (now == registration::none) {
                // Asio counts the socket as registered: until it is again, this worker would
                // never hear of a connection.
                backoff.expires_after(std::chrono::milliseconds(100));
                co_await backoff.async_wait(use_tuple);
                if (!acceptor.is_open()) {
                    co_return;
                }
                now = exclusive->add();
            }
            if (now == registration::plain) {
                log::warn("listen: a worker waits without EPOLLEXCLUSIVE: {}",
                          std::strerror(errno));
                exclusive.reset();
            }
        }
    }
}

} // namespace

void serve_listeners(std::vector<asio::ip::tcp::acceptor> listeners, runtime& rt,
                     const connection_handler& handler, std::size_t max_conns,
                     const accept_end_handler& on_end) {
    auto logs = std::make_shared<accept_logs>();
    auto loads = std::make_shared<worker_loads>(rt.size());
    for (auto& listener : listeners) {
        const auto protocol = listener.local_endpoint().protocol();
        for (std::size_t i = 0; i < rt.size(); ++i) {
            asio::ip::tcp::acceptor acceptor(rt.context(i));
            if (i + 1 < rt.size()) {
                // The same listening socket under another descriptor, in worker i's reactor.
                const int fd = ::fcntl(listener.native_handle(), F_DUPFD_CLOEXEC, 0);
                if (fd < 0) {
                    throw startup_error(fmt::format("listen: cannot share the listening socket: {}",
                                                    std::strerror(errno)));
                }
                acceptor.assign(protocol, fd);
            } else {
                acceptor = asio::ip::tcp::acceptor(rt.context(i), protocol, listener.release());
            }
            std::optional<exclusive_registration> exclusive;
            if (rt.size() > 1) {
                exclusive = wake_one_worker_per_connection(acceptor.native_handle());
            }
            asio::co_spawn(
                rt.context(i),
                accept_loop(std::move(acceptor), rt, handler, max_conns, logs, exclusive, loads, i),
                on_end);
        }
    }
}

} // namespace kaminari::net

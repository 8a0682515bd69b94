#include "kaminari/net/listener.hpp"

#include <kaminari/error.hpp>
#include <kaminari/log.hpp>
#include <kaminari/net/timeout.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <fmt/format.h>

#include <exception>
#include <string>
#include <sys/resource.h>

namespace kaminari::net {

runtime::runtime(std::size_t threads) {
    if (threads == 0) {
        threads = std::max(1u, std::thread::hardware_concurrency());
    }
    for (std::size_t i = 0; i < threads; ++i) {
        contexts_.push_back(std::make_unique<asio::io_context>(1));
    }
}

runtime::~runtime() {
    stop();
    threads_.clear();
}

asio::any_io_executor runtime::next_executor() noexcept {
    const std::size_t i = next_.fetch_add(1, std::memory_order_relaxed) % contexts_.size();
    return contexts_[i]->get_executor();
}

void runtime::run() {
    using guard_t = asio::executor_work_guard<asio::io_context::executor_type>;
    std::vector<guard_t> guards;
    for (auto& ctx : contexts_) {
        guards.emplace_back(ctx->get_executor());
    }
    for (std::size_t i = 1; i < contexts_.size(); ++i) {
        threads_.emplace_back([ctx = contexts_[i].get()] {
            for (;;) {
                try {
                    ctx->run();
                    return;
                } catch (const std::exception& e) {
                    log::error("worker: unexpected exception: {}", e.what());
                }
            }
        });
    }
    for (;;) {
        try {
            contexts_.front()->run();
            break;
        } catch (const std::exception& e) {
            log::error("main loop: unexpected exception: {}", e.what());
        }
    }
    stop();
    threads_.clear(); // joins
}

void runtime::stop() noexcept {
    for (auto& ctx : contexts_) {
        ctx->stop();
    }
}

std::vector<asio::ip::tcp::acceptor> bind_listeners(asio::io_context& ctx, const endpoint& local) {
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

void tune_socket(asio::ip::tcp::socket& socket) noexcept {
    error_code ignored;
    socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    socket.set_option(asio::socket_base::keep_alive(true), ignored);
}

asio::awaitable<void> accept_loop(asio::ip::tcp::acceptor acceptor, runtime& rt,
                                  const connection_handler& handler) {
    static std::atomic<std::uint64_t> next_id{0};
    asio::steady_timer backoff(co_await asio::this_coro::executor);
    std::uint64_t suppressed = 0;
    auto last_log = std::chrono::steady_clock::time_point{};
    for (;;) {
        auto exec = rt.next_executor();
        auto [ec, socket] = co_await acceptor.async_accept(exec, use_tuple);
        if (ec == asio::error::operation_aborted) {
            co_return;
        }
        if (ec) {
            // EMFILE, ENFILE, ENOBUFS, ...: the connection stays in the backlog; wait for
            // descriptors to free up instead of spinning or exiting.
            const auto now = std::chrono::steady_clock::now();
            if (now - last_log >= std::chrono::seconds(1)) {
                log::warn("accept failed: {}{}; retrying in 100 ms", ec.message(),
                          suppressed ? fmt::format(" ({} more since last report)", suppressed)
                                     : std::string());
                last_log = now;
                suppressed = 0;
            } else {
                ++suppressed;
            }
            backoff.expires_after(std::chrono::milliseconds(100));
            co_await backoff.async_wait(use_tuple);
            continue;
        }
        tune_socket(socket);
        const std::uint64_t id = ++next_id;
        asio::co_spawn(exec, handler(std::move(socket), id), [id](std::exception_ptr e) {
            if (!e) {
                return;
            }
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& ex) {
                log::error("#{} connection ended by exception: {}", id, ex.what());
            } catch (...) {
                log::error("#{} connection ended by an unknown exception", id);
            }
        });
    }
}

namespace {

asio::awaitable<std::pair<error_code, asio::ip::tcp::socket>> connect_any(endpoint remote) {
    using tcp = asio::ip::tcp;
    auto exec = co_await asio::this_coro::executor;
    tcp::socket socket(exec);
    error_code ec;
    const auto literal = asio::ip::make_address(remote.host, ec);
    if (!ec) {
        // An address literal needs no resolver thread.
        auto [cec] = co_await socket.async_connect(tcp::endpoint(literal, remote.port), use_tuple);
        co_return std::pair{cec, std::move(socket)};
    }
    tcp::resolver resolver(exec);
    auto [rec, results] = co_await resolver.async_resolve(
        remote.host, std::to_string(remote.port), tcp::resolver::numeric_service, use_tuple);
    if (rec) {
        co_return std::pair{rec, std::move(socket)};
    }
    auto [cec, ep] = co_await asio::async_connect(socket, results, use_tuple);
    (void)ep;
    co_return std::pair{cec, std::move(socket)};
}

} // namespace

asio::awaitable<std::pair<error_code, asio::ip::tcp::socket>>
connect_remote(endpoint remote, std::chrono::milliseconds limit) {
    auto result = co_await with_timeout(connect_any(std::move(remote)), limit);
    if (!result) {
        co_return std::pair{error_code(asio::error::timed_out),
                            asio::ip::tcp::socket(co_await asio::this_coro::executor)};
    }
    if (!result->first) {
        tune_socket(result->second);
    }
    co_return std::move(*result);
}

std::uint64_t raise_open_file_limit() noexcept {
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0) {
        return 0;
    }
    if (lim.rlim_cur < lim.rlim_max) {
        rlimit raised = lim;
        raised.rlim_cur = lim.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
            lim = raised;
        }
    }
    return lim.rlim_cur;
}

} // namespace kaminari::net

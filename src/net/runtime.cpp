#include "kaminari/net/runtime.hpp"

#include <kaminari/log.hpp>

#include <boost/asio/executor_work_guard.hpp>

#include <algorithm>
#include <exception>
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

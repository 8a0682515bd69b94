#include "kaminari/net/hand_over.hpp"

#include <kaminari/log.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <exception>
#include <memory>
#include <unistd.h>
#include <utility>

namespace kaminari::net {

namespace {

// A descriptor on its way between two workers: closed unless someone took it.
class owned_fd {
public:
    explicit owned_fd(int fd) noexcept
        : fd_(fd) {}
    owned_fd(owned_fd&& o) noexcept
        : fd_(std::exchange(o.fd_, -1)) {}
    owned_fd& operator=(owned_fd&&) = delete;
    ~owned_fd() {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }
    int get() const noexcept { return fd_; }
    void release() noexcept { fd_ = -1; }

private:
    int fd_;
};

} // namespace

asio::awaitable<bool> hand_over(asio::ip::tcp::socket& socket, asio::io_context& to,
                                handed_connection run, std::uint64_t id) {
    error_code ec;
    const auto protocol = socket.local_endpoint(ec).protocol();
    if (ec) {
        log::debug("#{} the app's connection cannot go to another worker: {}", id, ec.message());
        co_return false;
    }
    const auto here = co_await asio::this_coro::executor;
    // Cancelled (from the other worker, through a post to this one) when the connection ends.
    // Only this frame owns it: what runs on the other worker holds a weak reference, so a
    // connection still running there when kaminari stops (its frame destroyed with that
    // worker's io_context, after this one's) never destroys a timer of this worker's.
    auto ended = std::make_shared<asio::steady_timer>(here, asio::steady_timer::time_point::max());
    auto done = [here, weak = std::weak_ptr<asio::steady_timer>(ended)]() noexcept {
        try {
            asio::post(here, [weak] {
                if (auto t = weak.lock()) {
                    t->cancel();
                }
            });
        } catch (const std::exception& ex) { // bad_alloc: the waiting frame keeps its slot
            log::error("cannot tell a worker that a connection it handed over ended: {}",
                       ex.what());
        }
    };
    // `run` lives as long as the connection: a coroutine lambda's captures are in it.
    auto runner = std::make_shared<handed_connection>(std::move(run));
    owned_fd fd(socket.release(ec));
    if (ec) {
        log::debug("#{} the app's connection cannot go to another worker: {}", id, ec.message());
        co_return false;
    }
    asio::post(to, [&to, protocol, fd = std::move(fd), id, runner, done]() mutable {
        // Nothing may escape into the other worker's run loop, and whatever goes wrong here,
        // the waiting frame must hear of it (else it holds its max_conns slot for good).
        try {
            asio::ip::tcp::socket s(to);
            error_code aec;
            s.assign(protocol, fd.get(), aec); // registers with epoll: may throw bad_alloc
            if (aec) {
                log::warn("#{} cannot move the app's connection to another worker: {}", id,
                          aec.message());
                done();
                return;
            }
            fd.release();
            asio::co_spawn(to, (*runner)(std::move(s)), [id, done, runner](std::exception_ptr e) {
                if (e) {
                    log::error("#{} connection ended by exception: {}", id, log::what(e));
                }
                done();
            });
        } catch (const std::exception& ex) { // bad_alloc: no registration or coroutine frame
            log::error("#{} cannot start on another worker: {}", id, ex.what());
            done();
        }
    });
    co_await ended->async_wait(use_tuple);
    co_return true;
}

} // namespace kaminari::net

#include "kaminari/net/hand_over.hpp"

#include <kaminari/log.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <exception>
#include <memory>
#include <optional>
#include <unistd.h>

namespace kaminari::net {

asio::awaitable<bool> hand_over(asio::ip::tcp::socket socket, asio::io_context& to,
                                handed_connection run, std::uint64_t id) {
    error_code ec;
    const auto protocol = socket.local_endpoint(ec).protocol();
    const int fd = ec ? -1 : socket.release(ec);
    if (ec) {
        log::debug("#{} the app's connection ended before it could go to another worker: {}", id,
                   ec.message());
        co_return false;
    }
    const auto here = co_await asio::this_coro::executor;
    // Cancelled (from the other worker, through a post to this one) when the connection ends.
    // Only this frame owns it: what runs on the other worker holds a weak reference, so a
    // connection still running there when kaminari stops (its frame destroyed with that
    // worker's io_context, after this one's) never destroys a timer of this worker's.
    auto ended = std::make_shared<asio::steady_timer>(here, asio::steady_timer::time_point::max());
    auto done = [here, weak = std::weak_ptr<asio::steady_timer>(ended)] {
        asio::post(here, [weak] {
            if (auto t = weak.lock()) {
                t->cancel();
            }
        });
    };
    // `run` lives as long as the connection: a coroutine lambda's captures are in it.
    auto runner = std::make_shared<handed_connection>(std::move(run));
    asio::post(to, [&to, protocol, fd, id, runner, done]() mutable {
        asio::ip::tcp::socket s(to);
        error_code aec;
        s.assign(protocol, fd, aec);
        if (aec) {
            ::close(fd);
            log::warn("#{} cannot move the app's connection to another worker: {}", id,
                      aec.message());
            done();
            return;
        }
        std::optional<asio::awaitable<void>> connection;
        try {
            connection.emplace((*runner)(std::move(s)));
        } catch (const std::exception& ex) { // no coroutine frame (bad_alloc)
            log::error("#{} cannot start on another worker: {}", id, ex.what());
            done();
            return;
        }
        asio::co_spawn(to, std::move(*connection), [id, done, runner](std::exception_ptr e) {
            if (e) {
                try {
                    std::rethrow_exception(e);
                } catch (const std::exception& ex) {
                    log::error("#{} connection ended by exception: {}", id, ex.what());
                } catch (...) {
                    log::error("#{} connection ended by an unknown exception", id);
                }
            }
            done();
        });
    });
    co_await ended->async_wait(use_tuple);
    co_return true;
}

} // namespace kaminari::net

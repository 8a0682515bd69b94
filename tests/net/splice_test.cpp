#include "kaminari/net/splice.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace kaminari::net {
namespace {

using tcp = asio::ip::tcp;

// A connected pair of loopback TCP sockets.
std::pair<tcp::socket, tcp::socket> connected_pair(asio::io_context& ctx) {
    tcp::acceptor acceptor(ctx, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    tcp::socket a(ctx);
    a.connect(acceptor.local_endpoint());
    tcp::socket b = acceptor.accept();
    return {std::move(a), std::move(b)};
}

std::string read_to_end(tcp::socket& s) {
    std::string out;
    char buf[4096];
    for (;;) {
        error_code ec;
        std::size_t n = s.read_some(asio::buffer(buf), ec);
        out.append(buf, n);
        if (ec) {
            EXPECT_EQ(ec, asio::error::eof);
            return out;
        }
    }
}

// app <-> [a =splice= b] <-> target: the app sends `up` and half-closes, the target reads to
// the end, answers `down` and half-closes, the app reads to the end. With `before_start`, all
// of `up` and its end of stream are waiting at `a` before the relay starts.
void exchange_through_splice(const std::string& up, const std::string& down,
                             bool before_start = false) {
    asio::io_context ctx;
    // Named sockets, not structured bindings: clang 14 cannot capture those in a lambda.
    auto front = connected_pair(ctx);
    auto back = connected_pair(ctx);
    tcp::socket& app = front.first;
    tcp::socket& a = front.second;
    tcp::socket& b = back.first;
    tcp::socket& target = back.second;
    const auto send_up = [&] {
        asio::write(app, asio::buffer(up));
        app.shutdown(tcp::socket::shutdown_send);
    };
    if (before_start) {
        send_up();
        while (a.available() < up.size()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }
    bool done = false;
    relay_result result;
    async_splice_relay(a, b, std::chrono::milliseconds(0), [&](relay_result r) {
        result = r;
        done = true;
    });
    if (before_start) {
        EXPECT_FALSE(done); // never from inside the call
    }
    // The relay runs on this thread; the app and the target block on threads of their own.
    std::thread writer([&] {
        if (!before_start) {
            send_up();
        }
    });
    std::string got_up;
    std::thread peer([&] {
        got_up = read_to_end(target);
        asio::write(target, asio::buffer(down));
        target.shutdown(tcp::socket::shutdown_send);
    });
    std::string got_down;
    std::thread reader([&] { got_down = read_to_end(app); });
    ctx.run();
    writer.join();
    peer.join();
    reader.join();
    EXPECT_TRUE(done);
    EXPECT_EQ(got_up, up);
    EXPECT_EQ(got_down, down);
    EXPECT_FALSE(result.a_to_b.ec);
    EXPECT_FALSE(result.b_to_a.ec);
    EXPECT_EQ(result.a_to_b.bytes, up.size());
    EXPECT_EQ(result.b_to_a.bytes, down.size());
}

TEST(Splice, EmptyPipesAreKeptForTheThreadsNextConnections) {
    release_spare_pipes();
    ASSERT_EQ(spare_pipe_count(), 0u);
    exchange_through_splice("hello", "world");
    // The target answers only after the app's direction has ended and given its empty pipe
    // back, so the answer went through the same pipe, which is now spare.
    EXPECT_EQ(spare_pipe_count(), 1u);
    // The next connection takes it and gives it back, also with more than a pipe holds.
    exchange_through_splice(std::string(3 << 20, 'u'), std::string(2 << 20, 'd'));
    EXPECT_EQ(spare_pipe_count(), 1u);
    EXPECT_EQ(release_spare_pipes(), 1u);
    EXPECT_EQ(spare_pipe_count(), 0u);
}

TEST(Splice, BytesAndEndThereBeforeTheRelayStartsGoThrough) {
    // The first socket's bytes are tried for as the relay starts, before any wait: here they
    // and their end of stream are all there by then, so that first try moves them and ends
    // the direction, and the target's answer still comes back.
    release_spare_pipes();
    exchange_through_splice(std::string(100000, 'e'), "answer", true);
}

TEST(Splice, NothingThereAtTheStartHoldsNoPipe) {
    // The first try finds nothing: its pipe goes back to the spares while the relay waits.
    release_spare_pipes();
    asio::io_context ctx;
    auto front = connected_pair(ctx);
    auto back = connected_pair(ctx);
    bool done = false;
    async_splice_relay(front.second, back.first, std::chrono::milliseconds(0),
                       [&](relay_result) { done = true; });
    EXPECT_EQ(spare_pipe_count(), 1u);
    ctx.run_for(std::chrono::milliseconds(20));
    EXPECT_FALSE(done);
    EXPECT_EQ(spare_pipe_count(), 1u);
    front.first.shutdown(tcp::socket::shutdown_send);
    back.second.shutdown(tcp::socket::shutdown_send);
    ctx.run_for(std::chrono::seconds(5));
    EXPECT_TRUE(done);
}

// Pipe ends this process has open (a relay's pipes and the thread's spares).
std::size_t open_pipe_ends() {
    std::size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        const auto target = std::filesystem::read_symlink(e.path(), ec);
        if (!ec && target.string().rfind("pipe:[", 0) == 0) {
            ++n;
        }
    }
    return n;
}

// `count` relays app <-> [inner a =splice= inner b] <-> target on one io_context.
struct relays {
    explicit relays(int count) {
        inner.reserve(2 * static_cast<std::size_t>(count));
        for (int i = 0; i < count; ++i) {
            auto [app, a] = connected_pair(ctx);
            auto [b, target] = connected_pair(ctx);
            inner.push_back(std::move(a));
            inner.push_back(std::move(b));
            apps.push_back(std::move(app));
            targets.push_back(std::move(target));
        }
    }
    void start() {
        for (std::size_t i = 0; i < apps.size(); ++i) {
            async_splice_relay(inner[2 * i], inner[2 * i + 1], std::chrono::milliseconds(0),
                               [this](relay_result) { ++done; });
        }
    }
    // Runs the io_context until `ready()` or 5 s.
    template <class Pred>
    bool run_until(Pred ready) {
        for (int k = 0; k < 500 && !ready(); ++k) {
            ctx.run_for(std::chrono::milliseconds(10));
        }
        return ready();
    }
    asio::io_context ctx;
    std::vector<tcp::socket> apps, targets, inner;
    std::size_t done = 0;
};

TEST(Splice, QuietConnectionsHoldNoPipe) {
    // 20 relays with bytes both ways, then quiet but open: each direction took a pipe only
    // while its bytes moved, so all of them shared one, which is now the thread's spare.
    release_spare_pipes();
    const std::size_t pipes_before = open_pipe_ends();
    relays r(20);
    r.start();
    for (std::size_t i = 0; i < r.apps.size(); ++i) {
        asio::write(r.apps[i], asio::buffer(std::string("ping")));
        asio::write(r.targets[i], asio::buffer(std::string("pong")));
    }
    ASSERT_TRUE(r.run_until([&] {
        for (std::size_t i = 0; i < r.apps.size(); ++i) {
            if (r.targets[i].available() < 4 || r.apps[i].available() < 4) {
                return false;
            }
        }
        return true;
    }));
    EXPECT_EQ(spare_pipe_count(), 1u);
    EXPECT_EQ(open_pipe_ends() - pipes_before, 2u);
    for (std::size_t i = 0; i < r.apps.size(); ++i) {
        r.apps[i].shutdown(tcp::socket::shutdown_send);
        r.targets[i].shutdown(tcp::socket::shutdown_send);
    }
    r.ctx.run();
    EXPECT_EQ(r.done, r.apps.size());
    for (std::size_t i = 0; i < r.apps.size(); ++i) {
        EXPECT_EQ(read_to_end(r.targets[i]), "ping");
        EXPECT_EQ(read_to_end(r.apps[i]), "pong");
    }
    EXPECT_EQ(release_spare_pipes(), 1u);
}

TEST(Splice, TheThreadKeepsAtMostSixteenSparePipes) {
    // 20 relays whose targets do not read yet: each holds a pipe with bytes that wait for
    // room at its target (40 pipe ends). Once the targets read it all, the pipes come back
    // empty; the thread keeps 16 and closes the rest.
    release_spare_pipes();
    const std::size_t pipes_before = open_pipe_ends();
    relays r(20);
    const std::string up(1 << 20, 'u');
    for (std::size_t i = 0; i < r.apps.size(); ++i) {
        // A small send buffer past the relay, so the bytes pile up in its pipe.
        r.inner[2 * i + 1].set_option(tcp::socket::send_buffer_size(4096));
    }
    r.start();
    std::size_t written = 0;
    for (auto& app : r.apps) {
        asio::async_write(app, asio::buffer(up), [&](error_code ec, std::size_t) {
            EXPECT_FALSE(ec);
            app.shutdown(tcp::socket::shutdown_send);
            ++written;
        });
    }
    ASSERT_TRUE(r.run_until([&] { return open_pipe_ends() - pipes_before >= 40; }));
    EXPECT_EQ(spare_pipe_count(), 0u);
    std::vector<std::string> got(r.apps.size());
    for (std::size_t i = 0; i < r.apps.size(); ++i) {
        r.inner[2 * i + 1].set_option(tcp::socket::send_buffer_size(1 << 20));
        asio::async_read(r.targets[i], asio::dynamic_buffer(got[i]),
                         [&r, i](error_code ec, std::size_t) {
                             EXPECT_EQ(ec, asio::error::eof);
                             r.targets[i].shutdown(tcp::socket::shutdown_send);
                         });
    }
    r.ctx.run();
    EXPECT_EQ(written, r.apps.size());
    EXPECT_EQ(r.done, r.apps.size());
    for (std::size_t i = 0; i < r.apps.size(); ++i) {
        EXPECT_EQ(got[i].size(), up.size());
        EXPECT_EQ(read_to_end(r.apps[i]), "");
    }
    EXPECT_EQ(spare_pipe_count(), 16u);
    EXPECT_EQ(release_spare_pipes(), 16u);
    EXPECT_EQ(open_pipe_ends(), pipes_before);
}

} // namespace
} // namespace kaminari::net

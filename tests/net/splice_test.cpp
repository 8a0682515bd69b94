#include "kaminari/net/splice.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <string>
#include <sys/resource.h>
#include <thread>
#include <unistd.h>
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

// While it lives, the process can open no descriptor: RLIMIT_NOFILE is lowered to just above
// the highest open one and every free slot below is taken. Both are undone when it goes.
class no_descriptors_left {
public:
    no_descriptors_left() {
        base_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        ::getrlimit(RLIMIT_NOFILE, &saved_);
        int highest = base_;
        for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
            highest = std::max(highest, std::atoi(e.path().filename().c_str()));
        }
        rlimit lowered = saved_;
        lowered.rlim_cur = static_cast<rlim_t>(highest) + 1;
        ::setrlimit(RLIMIT_NOFILE, &lowered);
        for (int fd; (fd = ::fcntl(base_, F_DUPFD_CLOEXEC, 0)) >= 0;) {
            fillers_.push_back(fd);
        }
    }
    no_descriptors_left(const no_descriptors_left&) = delete;
    no_descriptors_left& operator=(const no_descriptors_left&) = delete;
    ~no_descriptors_left() {
        for (int fd : fillers_) {
            ::close(fd);
        }
        ::close(base_);
        ::setrlimit(RLIMIT_NOFILE, &saved_);
    }

private:
    int base_ = -1;
    rlimit saved_{};
    std::vector<int> fillers_;
};

TEST(Splice, OutOfDescriptorsARunningConnectionGoesOnWithoutAPipe) {
    // A connection that moved bytes (and gave its pipe back when it went quiet) wakes up when
    // no pipe can be had: its bytes go through without one, in both directions, with more
    // than one buffer's worth and waits for room on the far side, and none is lost or
    // reordered. (Before, the relay failed the connection.)
    release_spare_pipes();
    asio::io_context ctx;
    auto front = connected_pair(ctx);
    auto back = connected_pair(ctx);
    tcp::socket& app = front.first;
    tcp::socket& target = back.second;
    relay_result result;
    bool done = false;
    async_splice_relay(front.second, back.first, std::chrono::milliseconds(0), [&](relay_result r) {
        result = r;
        done = true;
    });
    asio::write(app, asio::buffer(std::string("hello")));
    asio::write(target, asio::buffer(std::string("world")));
    for (int k = 0; k < 500 && (target.available() < 5 || app.available() < 5); ++k) {
        ctx.run_for(std::chrono::milliseconds(10));
    }
    ASSERT_EQ(target.available(), 5u);
    ASSERT_EQ(app.available(), 5u);
    release_spare_pipes();

    std::string up, down;
    for (int i = 0; i < 300000; ++i) {
        up.push_back(static_cast<char>('a' + i % 26));
    }
    for (int i = 0; i < 200000; ++i) {
        down.push_back(static_cast<char>('A' + i % 23));
    }
    // With UBSan, the first check of an object's dynamic type (the error categories, on any
    // error_code made with them) takes a descriptor of the sanitizer's own: those checks are
    // made here, while there are descriptors. The relay's end (a virtual call too) comes after
    // the window without them.
    for (const error_code& e :
         {error_code(EMFILE, boost::system::system_category()),
          error_code(EAGAIN, boost::system::generic_category()), error_code(asio::error::eof)}) {
        EXPECT_FALSE(e.message().empty());
    }
    std::string got_up, got_down;
    int written = 0;
    int read = 0;
    {
        const no_descriptors_left none;
        int probe[2];
        ASSERT_NE(::pipe2(probe, O_CLOEXEC), 0);
        ASSERT_EQ(errno, EMFILE);
        for (auto [from, bytes] : {std::pair{&app, &up}, std::pair{&target, &down}}) {
            asio::async_write(*from, asio::buffer(*bytes), [&](error_code ec, std::size_t) {
                EXPECT_FALSE(ec);
                ++written;
            });
        }
        asio::async_read(target, asio::dynamic_buffer(got_up),
                         asio::transfer_exactly(5 + up.size()), [&](error_code ec, std::size_t) {
                             EXPECT_FALSE(ec);
                             ++read;
                         });
        asio::async_read(app, asio::dynamic_buffer(got_down),
                         asio::transfer_exactly(5 + down.size()), [&](error_code ec, std::size_t) {
                             EXPECT_FALSE(ec);
                             ++read;
                         });
        for (int k = 0; k < 1000 && (written < 2 || read < 2); ++k) {
            ctx.run_for(std::chrono::milliseconds(10));
        }
        EXPECT_EQ(spare_pipe_count(), 0u);
    }
    ASSERT_EQ(written, 2);
    ASSERT_EQ(read, 2);
    EXPECT_EQ(got_up, "hello" + up);
    EXPECT_EQ(got_down, "world" + down);
    EXPECT_FALSE(done);
    app.shutdown(tcp::socket::shutdown_send);
    target.shutdown(tcp::socket::shutdown_send);
    ctx.run();
    ASSERT_TRUE(done);
    EXPECT_EQ(read_to_end(target), "");
    EXPECT_EQ(read_to_end(app), "");
    EXPECT_FALSE(result.a_to_b.ec);
    EXPECT_FALSE(result.b_to_a.ec);
    EXPECT_EQ(result.a_to_b.bytes, 5 + up.size());
    EXPECT_EQ(result.b_to_a.bytes, 5 + down.size());
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
    // Each relay's own bytes, so that any crossing between connections would show.
    const auto up = [](std::size_t i) { return "ping" + std::string(1, char('a' + i)); };
    const auto down = [](std::size_t i) { return "pong" + std::string(1, char('a' + i)); };
    for (std::size_t i = 0; i < r.apps.size(); ++i) {
        asio::write(r.apps[i], asio::buffer(up(i)));
        asio::write(r.targets[i], asio::buffer(down(i)));
    }
    ASSERT_TRUE(r.run_until([&] {
        for (std::size_t i = 0; i < r.apps.size(); ++i) {
            if (r.targets[i].available() < 5 || r.apps[i].available() < 5) {
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
        EXPECT_EQ(read_to_end(r.targets[i]), up(i));
        EXPECT_EQ(read_to_end(r.apps[i]), down(i));
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
    // Each relay's own bytes, so that any crossing between connections would show.
    std::vector<std::string> up;
    for (std::size_t i = 0; i < r.apps.size(); ++i) {
        up.emplace_back(1 << 20, char('a' + i));
        // Small buffers past the relay (well under the 1 MiB sent, whatever the host's TCP
        // defaults), so the bytes pile up in its pipe.
        r.inner[2 * i + 1].set_option(tcp::socket::send_buffer_size(4096));
        r.targets[i].set_option(tcp::socket::receive_buffer_size(128 * 1024));
    }
    r.start();
    std::size_t written = 0;
    for (std::size_t i = 0; i < r.apps.size(); ++i) {
        asio::async_write(r.apps[i], asio::buffer(up[i]),
                          [&r, &written, i](error_code ec, std::size_t) {
                              EXPECT_FALSE(ec);
                              r.apps[i].shutdown(tcp::socket::shutdown_send);
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
        EXPECT_EQ(got[i].size(), up[i].size());
        EXPECT_TRUE(got[i] == up[i]) << "relay " << i << " delivered other bytes";
        EXPECT_EQ(read_to_end(r.apps[i]), "");
    }
    EXPECT_EQ(spare_pipe_count(), 16u);
    EXPECT_EQ(release_spare_pipes(), 16u);
    EXPECT_EQ(open_pipe_ends(), pipes_before);
}

} // namespace
} // namespace kaminari::net

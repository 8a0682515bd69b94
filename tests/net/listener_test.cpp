#include "kaminari/net/listener.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <dirent.h>
#include <future>
#include <mutex>
#include <netinet/in.h>
#include <string>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

namespace kaminari::net {
namespace {

using tcp = asio::ip::tcp;

// The events of every registration, in any epoll set of this process, of a listening socket
// bound to 127.0.0.1:`port` (/proc/self/fdinfo of each eventpoll descriptor).
std::vector<unsigned> registrations_of_port(std::uint16_t port) {
    std::vector<unsigned> events;
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) {
        ADD_FAILURE() << "no /proc/self/fd";
        return events;
    }
    while (const dirent* e = ::readdir(dir)) {
        char link[64] = {};
        const std::string path = std::string("/proc/self/fd/") + e->d_name;
        if (::readlink(path.c_str(), link, sizeof link - 1) <= 0 ||
            std::string(link) != "anon_inode:[eventpoll]") {
            continue;
        }
        std::FILE* f = std::fopen((std::string("/proc/self/fdinfo/") + e->d_name).c_str(), "r");
        if (f == nullptr) {
            continue;
        }
        char line[256];
        while (std::fgets(line, sizeof line, f) != nullptr) {
            int tfd = -1;
            unsigned ev = 0;
            if (std::sscanf(line, "tfd: %d events: %x", &tfd, &ev) != 2) {
                continue;
            }
            sockaddr_in a{};
            socklen_t len = sizeof a;
            int listening = 0;
            socklen_t listening_len = sizeof listening;
            if (::getsockname(tfd, reinterpret_cast<sockaddr*>(&a), &len) == 0 &&
                a.sin_family == AF_INET && ntohs(a.sin_port) == port &&
                ::getsockopt(tfd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &listening_len) == 0 &&
                listening != 0) {
                events.push_back(ev);
            }
        }
        std::fclose(f);
    }
    ::closedir(dir);
    return events;
}

// A runtime with two workers serving 127.0.0.1:0 with `handler`, run on a thread of its own.
struct served {
    connection_handler handler; // serve_listeners() keeps a reference
    runtime rt{2};
    std::uint16_t port = 0;
    std::thread thread;

    explicit served(connection_handler h)
        : handler(std::move(h)) {
        auto listeners = bind_listeners(rt.main_context(), endpoint{"127.0.0.1", 0});
        port = listeners.front().local_endpoint().port();
        serve_listeners(std::move(listeners), rt, handler, 0, [](std::exception_ptr) {});
        thread = std::thread([this] { rt.run(); });
    }
    ~served() {
        rt.stop();
        thread.join();
    }
};

// One byte from the server on a new connection, or 0 after 5 s.
char first_byte(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char c = 0;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::recv(fd, &c, 1, 0) != 1) {
        c = 0;
    }
    ::close(fd);
    return c;
}

TEST(Listener, EachWorkerWaitsOnTheListeningSocketWithExclusiveWakeUps) {
    served s([](tcp::socket, std::uint64_t) -> asio::awaitable<void> { co_return; });
    const auto events = registrations_of_port(s.port);
    ASSERT_EQ(events.size(), 2u) << "one registration per worker";
    for (const unsigned ev : events) {
        EXPECT_TRUE(ev & EPOLLEXCLUSIVE) << std::hex << ev;
        EXPECT_TRUE(ev & EPOLLIN) << std::hex << ev;
    }
}

// With exclusive wake-ups the kernel wakes one worker waiting in epoll_wait: a worker that is
// busy must not be the one that gets the next connection while the other waits.
TEST(Listener, AConnectionIsAcceptedWhileTheOtherWorkerIsBusy) {
    std::promise<void> second_served;
    auto released = second_served.get_future().share();
    std::atomic<int> n{0};
    served s([&](tcp::socket socket, std::uint64_t) -> asio::awaitable<void> {
        const int k = ++n;
        if (k == 1) {
            // Holds this worker's thread (no co_await) until the second connection is served,
            // or 15 s (longer than first_byte waits: a second connection left to this worker
            // fails).
            released.wait_for(std::chrono::seconds(15));
        }
        const char c = static_cast<char>('0' + k);
        co_await asio::async_write(socket, asio::buffer(&c, 1), asio::use_awaitable);
    });
    auto first = std::async(std::launch::async, [&] { return first_byte(s.port); });
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (n.load() == 0 && std::chrono::steady_clock::now() < give_up) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (n.load() != 1) {
        second_served.set_value(); // the first handler returns at once
        FAIL() << "the first connection was not accepted";
    }
    // The first connection's worker is blocked now; the other one must take this.
    EXPECT_EQ(first_byte(s.port), '2');
    second_served.set_value();
    EXPECT_EQ(first.get(), '1');
}

// A client connection to 127.0.0.1:`port`, or -1.
int connect_to(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// The kernel wakes the first waiting worker in the socket's wait queue: without turns, the
// worker registered first would take every connection that comes while it is free, and
// long-lived tunnels opened one after another would all share one core. Each connection is
// answered after a pause, when its worker waits on the listening socket again (a connection
// that comes while a worker is between two accepts goes to that worker, whatever the turn).
TEST(Listener, LongLivedConnectionsOneAtATimeAreSpreadOverTheWorkers) {
    std::mutex mutex;
    std::vector<std::thread::id> threads; // in the order they first served
    std::string order;                    // the worker of each connection: "ABAB..."
    std::atomic<int> n{0};
    served s([&](tcp::socket socket, std::uint64_t) -> asio::awaitable<void> {
        {
            std::lock_guard lock(mutex);
            auto it = std::find(threads.begin(), threads.end(), std::this_thread::get_id());
            if (it == threads.end()) {
                it = threads.insert(it, std::this_thread::get_id());
            }
            order += static_cast<char>('A' + (it - threads.begin()));
        }
        const char c = static_cast<char>('a' + (n++ % 26));
        asio::steady_timer pause(socket.get_executor(), std::chrono::milliseconds(5));
        co_await pause.async_wait(asio::use_awaitable);
        co_await asio::async_write(socket, asio::buffer(&c, 1), asio::use_awaitable);
        char end = 0; // held until the client closes
        (void)co_await socket.async_read_some(asio::buffer(&end, 1),
                                              asio::as_tuple(asio::use_awaitable));
    });
    // Short connections until both workers have served one (both run and wait then).
    for (int i = 0; i < 50; ++i) {
        const int fd = connect_to(s.port);
        char c = 0;
        ASSERT_TRUE(fd >= 0 && ::recv(fd, &c, 1, 0) == 1) << "warm-up connection " << i;
        ::close(fd);
        std::lock_guard lock(mutex);
        if (threads.size() == 2) {
            break;
        }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50)); // the short ones end
    {
        std::lock_guard lock(mutex);
        ASSERT_EQ(threads.size(), 2u) << "one worker served all warm-up connections: " << order;
        order.clear();
    }
    constexpr int connections = 10;
    std::vector<int> open;
    for (int i = 0; i < connections; ++i) {
        const int fd = connect_to(s.port);
        char c = 0;
        EXPECT_TRUE(fd >= 0 && ::recv(fd, &c, 1, 0) == 1) << "connection " << i;
        open.push_back(fd);
    }
    const auto events = registrations_of_port(s.port);
    EXPECT_EQ(events.size(), 2u);
    for (const unsigned ev : events) {
        EXPECT_TRUE(ev & EPOLLEXCLUSIVE) << "after the turns: " << std::hex << ev;
    }
    {
        std::lock_guard lock(mutex);
        const auto a = std::count(order.begin(), order.end(), 'A');
        const auto b = std::count(order.begin(), order.end(), 'B');
        EXPECT_EQ(a + b, connections) << order;
        EXPECT_LE(std::abs(a - b), 1) << "long-lived connections by worker: " << order;
        ASSERT_GE(order.size(), 2u);
        EXPECT_NE(order[0], order[1]) << "the first two on one worker: " << order;
    }
    for (const int fd : open) {
        ::close(fd);
    }
}

// Connections that are over before the next comes leave no worker busier than another: they
// are all served, whichever worker takes them.
TEST(Listener, ShortConnectionsOneAtATimeAreAllServed) {
    std::atomic<int> n{0};
    served s([&](tcp::socket socket, std::uint64_t) -> asio::awaitable<void> {
        const char c = static_cast<char>('a' + (n++ % 26));
        co_await asio::async_write(socket, asio::buffer(&c, 1), asio::use_awaitable);
    });
    for (int i = 0; i < 50; ++i) {
        ASSERT_EQ(first_byte(s.port), static_cast<char>('a' + i % 26)) << "connection " << i;
    }
}

} // namespace
} // namespace kaminari::net

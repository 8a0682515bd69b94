#pragma once

// Drives two tls::engine objects against each other in memory: ciphertext is copied from one
// engine's output to the other's input until both are done.

#include <kaminari/tls/engine.hpp>

#include <array>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

namespace kaminari::test {

/// Moves all pending output of `from` into `to`.
inline void transfer(tls::engine& from, tls::engine& to) {
    std::array<std::uint8_t, 16384> buf;
    while (std::size_t n = from.get_output(buf)) {
        if (to.put_input(std::span<const std::uint8_t>(buf.data(), n)) != n) {
            throw std::runtime_error("pump: input buffer full");
        }
    }
}

struct handshake_result {
    tls::error_code client;
    tls::error_code server;
};

inline bool done(tls::engine::want w) {
    return w == tls::engine::want_nothing || w == tls::engine::want_output;
}

/// Runs both handshakes to completion or until one side fails (the other then gets one more
/// step to read the alert).
inline handshake_result pump_handshake(tls::engine& client, tls::engine& server) {
    handshake_result r;
    bool client_done = false;
    bool server_done = false;
    for (int i = 0; i < 32 && !(client_done && server_done); ++i) {
        if (!client_done) {
            client_done = done(client.handshake(r.client)) || r.client;
        }
        transfer(client, server);
        if (!server_done) {
            server_done = done(server.handshake(r.server)) || r.server;
        }
        transfer(server, client);
        if ((r.client || r.server) && i > 0) {
            if (!client_done) {
                client.handshake(r.client);
            }
            if (!server_done) {
                server.handshake(r.server);
            }
            break;
        }
    }
    return r;
}

/// Writes all of `text` through `from` and reads it all back from `to`.
inline std::string send(tls::engine& from, tls::engine& to, std::string_view text) {
    auto data = std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(text.data()),
                                              text.size());
    std::string got;
    std::array<std::uint8_t, 4096> buf;
    while (!data.empty() || got.size() < text.size()) {
        if (!data.empty()) {
            tls::error_code ec;
            std::size_t n = 0;
            from.write(data, ec, n);
            if (ec) {
                throw std::runtime_error("send: write: " + ec.message());
            }
            data = data.subspan(n);
        }
        transfer(from, to);
        for (;;) {
            tls::error_code ec;
            std::size_t n = 0;
            to.read(buf, ec, n);
            if (ec) {
                throw std::runtime_error("send: read: " + ec.message());
            }
            if (n == 0) {
                break;
            }
            got.append(reinterpret_cast<const char*>(buf.data()), n);
        }
        transfer(to, from);
    }
    return got;
}

} // namespace kaminari::test

#pragma once

// Cryptographically strong randomness for the websocket client: mask keys (RFC 6455 §5.3
// requires them to be unpredictable) and the Sec-WebSocket-Key nonce (§4.1). The codec takes
// these as arguments; this is where they come from.

#include <kaminari/codec/mask.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace kaminari::net {

/// Fills `out` from OpenSSL's CSPRNG (`RAND_bytes`). Throws std::runtime_error carrying
/// OpenSSL's reason if the generator fails (it is unseeded); that ends only the connection
/// that asked.
void random_bytes(std::span<std::uint8_t> out);

/// Hands out random mask keys, drawing them from `RAND_bytes` 64 at a time so that a client in
/// `mask=standard` mode makes one RAND call per 64 frames. A plain value: not thread safe.
class mask_key_source {
public:
    static constexpr std::size_t batch = 64;

    /// The next key. Throws like random_bytes() when a batch must be drawn and cannot be.
    codec::mask_key next();

private:
    std::array<std::uint8_t, batch * sizeof(codec::mask_key)> bytes_{};
    std::size_t next_ = batch;
};

/// The next key from this thread's mask_key_source (each worker thread has its own, so no
/// locking and no per-connection batch). Throws like random_bytes().
codec::mask_key next_mask_key();

/// A fresh Sec-WebSocket-Key nonce from this thread's batch of 16 nonces (one RAND_bytes call per
/// 16 connections; a call costs far more than the 16 bytes it makes). Throws like
/// random_bytes().
std::array<std::uint8_t, 16> next_nonce();

} // namespace kaminari::net

#pragma once

// RFC 6455 §5 send side: the header for the next frame, and in-place masking of its payload
// (§5.3). Keys come from the caller (the codec has no RNG); the mask_mode decides which key a
// client frame carries:
//   skip     - mask bit set, all-zero key: the payload is not touched (lightws `Client`)
//   fixed    - the connection key given at construction, for every frame
//   standard - the key passed with each frame; the caller draws a fresh one every time
// A server never masks.

#include <kaminari/codec/frame.hpp>
#include <kaminari/codec/mask.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace kaminari::codec {

/// Builds frame headers for one connection. Copyable, no heap, noexcept; not thread safe
/// (one writer at a time, which also protects the returned header bytes).
class frame_encoder {
public:
    /// `connection_key` is used only by a client in `mask_mode::fixed`.
    frame_encoder(role local, mask_mode mode, const mask_key& connection_key = {}) noexcept
        : role_(local)
        , mode_(mode)
        , connection_key_(connection_key) {}

    /// True when encode() uses its `frame_key` argument (a client in `mask_mode::standard`):
    /// the caller must then pass a fresh random key for every frame.
    bool needs_frame_key() const noexcept {
        return role_ == role::client && mode_ == mask_mode::standard;
    }

    /// Encodes the header of a frame with FIN set, opcode `op` and `payload.size()` bytes of
    /// payload, and masks `payload` in place when this is a client in `fixed`/`standard` mode
    /// (in `skip` mode the payload is untouched). Returns the header bytes, which live in this
    /// object and stay valid until the next call. Preconditions: a control `op` has at most
    /// 125 bytes of payload.
    std::span<const std::uint8_t> encode(opcode op, std::span<std::uint8_t> payload,
                                         const mask_key& frame_key = {}) noexcept;

    role local_role() const noexcept { return role_; }
    mask_mode mode() const noexcept { return mode_; }

private:
    role role_;
    mask_mode mode_;
    mask_key connection_key_;
    std::array<std::uint8_t, max_header_size> head_{};
};

} // namespace kaminari::codec

#include "kaminari/codec/frame_decoder.hpp"

#include <kaminari/codec/bytes.hpp>

#include <algorithm>
#include <cstring>

namespace kaminari::codec {

errc frame_decoder::start_frame(const frame_header& h, decode_step& step) noexcept {
    switch (h.op) {
    case opcode::text:
        // The tunnel carries bytes, not UTF-8 text; the peer is told so with close 1003.
        return errc::text_frame;
    case opcode::binary:
        // A new message may not start inside a fragmented one (§5.4).
        if (in_message_) {
            return errc::bad_continuation;
        }
        in_message_ = !h.fin;
        break;
    case opcode::continuation:
        // A continuation frame needs a message in progress (§5.4).
        if (!in_message_) {
            return errc::bad_continuation;
        }
        in_message_ = !h.fin;
        break;
    default:
        break;
    }
    op_ = h.op;
    remaining_ = h.length;
    key_ = h.key;
    unmask_ = h.masked && !is_zero(h.key);
    phase_ = 0;
    if (is_control(h.op)) {
        control_len_ = 0;
        state_ = state::control;
        if (remaining_ == 0) {
            return finish_control(step);
        }
    } else {
        state_ = remaining_ == 0 ? state::head : state::data;
    }
    return errc::ok;
}

errc frame_decoder::finish_control(decode_step& step) noexcept {
    state_ = state::head;
    switch (op_) {
    case opcode::ping:
        std::memcpy(ping_.data(), control_.data(), control_len_);
        ping_len_ = control_len_;
        step.ping = true;
        break;
    case opcode::pong:
        step.pong = true;
        break;
    default: // close
        // A close payload is empty or starts with a 2-byte status code (§5.5.1).
        if (control_len_ == 1) {
            return errc::bad_close_payload;
        }
        if (control_len_ == 0) {
            close_code_ = close_code::no_status;
        } else {
            close_code_ = load_u16be(control_.data());
            // Codes reserved for local use or not assigned must not be on the wire (§7.4).
            if (!is_valid_close_code(close_code_)) {
                return errc::bad_close_code;
            }
        }
        step.close = true;
        state_ = state::closed;
        break;
    }
    return errc::ok;
}

decode_step frame_decoder::feed(std::span<std::uint8_t> buf) noexcept {
    decode_step step;
    if (state_ == state::failed) {
        step.err = err_;
        return step;
    }
    std::uint8_t* const base = buf.data();
    const std::size_t end = buf.size();
    std::size_t in = 0;
    std::size_t out = 0;
    while (in < end && state_ != state::closed) {
        errc err = errc::ok;
        switch (state_) {
        case state::head: {
            decode_header_result r;
            std::size_t used = 0;
            if (stash_len_ == 0) {
                r = decode_header(buf.subspan(in), role_);
                if (r.err == errc::need_more) {
                    // Fewer bytes than a full header remain (< 14): keep them for next time.
                    stash_len_ = static_cast<std::uint8_t>(end - in);
                    std::memcpy(stash_.data(), base + in, stash_len_);
                    in = end;
                    break;
                }
                used = r.consumed;
            } else {
                const std::size_t k = std::min(max_header_size - stash_len_, end - in);
                std::memcpy(stash_.data() + stash_len_, base + in, k);
                r = decode_header(std::span(stash_.data(), stash_len_ + k), role_);
                if (r.err == errc::need_more) {
                    // Only possible when all of buf went into the stash (a header is <= 14).
                    stash_len_ = static_cast<std::uint8_t>(stash_len_ + k);
                    in = end;
                    break;
                }
                used = r.consumed - stash_len_;
                stash_len_ = 0;
            }
            if (r.err != errc::ok) {
                err = r.err;
                break;
            }
            in += used;
            err = start_frame(r.header, step);
            break;
        }
        case state::data: {
            const std::size_t n = static_cast<std::size_t>(
                std::min<std::uint64_t>(remaining_, static_cast<std::uint64_t>(end - in)));
            if (out != in) {
                std::memmove(base + out, base + in, n);
            }
            if (unmask_) {
                phase_ =
                    static_cast<std::uint8_t>(apply_mask(std::span(base + out, n), key_, phase_));
            }
            out += n;
            in += n;
            remaining_ -= n;
            if (remaining_ == 0) {
                state_ = state::head;
            }
            break;
        }
        case state::control: {
            const std::size_t n = static_cast<std::size_t>(
                std::min<std::uint64_t>(remaining_, static_cast<std::uint64_t>(end - in)));
            std::uint8_t* dst = control_.data() + control_len_;
            std::memcpy(dst, base + in, n);
            if (unmask_) {
                phase_ = static_cast<std::uint8_t>(apply_mask(std::span(dst, n), key_, phase_));
            }
            control_len_ = static_cast<std::uint8_t>(control_len_ + n);
            in += n;
            remaining_ -= n;
            if (remaining_ == 0) {
                err = finish_control(step);
            }
            break;
        }
        case state::closed:
        case state::failed:
            break;
        }
        if (err != errc::ok) {
            state_ = state::failed;
            err_ = err;
            return decode_step{err};
        }
    }
    step.payload = out;
    return step;
}

} // namespace kaminari::codec

#include "kaminari/codec/mux_cool.hpp"

#include <kaminari/codec/bytes.hpp>

#include <algorithm>
#include <cstring>

namespace kaminari::codec::mux {

namespace {

// Offsets in a frame from its first byte (the metaLen field).
constexpr std::size_t at_status = 4;
constexpr std::size_t at_option = 5;
constexpr std::size_t at_network = 6;
constexpr std::size_t at_addr_type = 9;
constexpr std::size_t at_domain_length = 10;

// The smallest meta of a New frame: id, status, option, network, port, address type.
constexpr std::size_t new_meta_fixed = 8;

// The address bytes of each type after the type byte (a domain: length byte + name).
constexpr std::size_t address_size(address_type t, std::size_t domain_length) noexcept {
    switch (t) {
    case address_type::ipv4:
        return 4;
    case address_type::ipv6:
        return 16;
    case address_type::domain:
        return 1 + domain_length;
    }
    return 0;
}

constexpr bool is_address_type(std::uint8_t b) noexcept {
    return b >= 1 && b <= 3;
}

// v2ray's domain check (common/protocol/address.go): letters, digits, '.', '_', '-'.
constexpr bool is_domain_char(std::uint8_t c) noexcept {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
           c == '_' || c == '-';
}

// detect() for a stream that must start with a New frame head.
verdict detect_new(std::span<const std::uint8_t> p) noexcept;

} // namespace

std::string_view to_string(error e) noexcept {
    switch (e) {
    case error::ok:
        return "ok";
    case error::bad_meta_length:
        return "invalid metadata length";
    case error::bad_status:
        return "unknown session status";
    case error::bad_network:
        return "unknown network in a New frame";
    case error::bad_address:
        return "invalid address in a New frame";
    }
    return "?";
}

error parser::decode_meta() noexcept {
    const std::uint8_t* m = stash_.data();
    const std::size_t len = need_;
    meta_.id = load_u16be(m);
    meta_.option = m[3];
    meta_.length = 0;
    meta_.net = network::tcp;
    meta_.port = 0;
    meta_.addr_type = address_type::ipv4;
    meta_.addr_size = 0;
    // An unknown status ends the whole connection (v2ray server.go handleFrame).
    if (m[2] < 1 || m[2] > 4) {
        return error::bad_status;
    }
    meta_.st = static_cast<status>(m[2]);
    if (meta_.st != status::new_session) {
        return error::ok;
    }
    // New carries network, port and address type at least (v2ray frame.go: "insufficient
    // buffer").
    if (len < new_meta_fixed) {
        return error::bad_meta_length;
    }
    if (m[4] != static_cast<std::uint8_t>(network::tcp) &&
        m[4] != static_cast<std::uint8_t>(network::udp)) {
        return error::bad_network;
    }
    meta_.net = static_cast<network>(m[4]);
    meta_.port = load_u16be(m + 5);
    if (!is_address_type(m[7])) {
        return error::bad_address;
    }
    meta_.addr_type = static_cast<address_type>(m[7]);
    std::size_t size = 0;
    const std::uint8_t* addr = m + new_meta_fixed;
    if (meta_.addr_type == address_type::domain) {
        // The length byte must be inside the meta, and a name has at least one character.
        if (len < new_meta_fixed + 1 || m[new_meta_fixed] == 0) {
            return error::bad_address;
        }
        size = m[new_meta_fixed];
        ++addr;
    } else {
        size = address_size(meta_.addr_type, 0);
    }
    // The address must end inside the meta; bytes after it are ignored (Xray's XUDP id).
    if (static_cast<std::size_t>(addr - m) + size > len) {
        return error::bad_address;
    }
    std::memcpy(meta_.addr.data(), addr, size);
    meta_.addr_size = static_cast<std::uint8_t>(size);
    return error::ok;
}

parse_step parser::feed(std::span<const std::uint8_t> in) noexcept {
    if (err_ != error::ok) {
        return {err_, 0, event::none};
    }
    if (in.empty()) {
        return {};
    }
    if (state_ == state::data) {
        const std::size_t n = std::min(remaining_, in.size());
        remaining_ -= n;
        if (remaining_ == 0) {
            state_ = state::meta_length;
            need_ = 2;
            have_ = 0;
        }
        return {error::ok, n, event::data};
    }
    const std::size_t take = std::min(need_ - have_, in.size());
    std::memcpy(stash_.data() + have_, in.data(), take);
    have_ += take;
    if (have_ < need_) {
        return {error::ok, take, event::none};
    }
    have_ = 0;
    switch (state_) {
    case state::meta_length: {
        const std::size_t len = load_u16be(stash_.data());
        // v2ray's reader refuses more than 512 ("invalid metalen"); id, status and option
        // take 4.
        if (len > max_meta_size || len < 4) {
            return fail(error::bad_meta_length);
        }
        state_ = state::meta;
        need_ = len;
        return {error::ok, take, event::none};
    }
    case state::meta:
        if (const error e = decode_meta(); e != error::ok) {
            return fail(e);
        }
        if (meta_.has_data()) {
            state_ = state::data_length;
            need_ = 2;
            return {error::ok, take, event::none};
        }
        state_ = state::meta_length;
        need_ = 2;
        return {error::ok, take, event::frame};
    case state::data_length:
        meta_.length = load_u16be(stash_.data());
        remaining_ = meta_.length;
        state_ = remaining_ != 0 ? state::data : state::meta_length;
        need_ = 2;
        return {error::ok, take, event::frame};
    case state::data:
        break; // handled above
    }
    return {error::ok, take, event::none};
}

verdict detect(std::span<const std::uint8_t> stream) noexcept {
    // v2ray's client ends a session whose first payload failed (its app closed at once) with
    // End and no New before it, so a connection may open with End frames.
    std::size_t off = 0;
    for (std::size_t ends = 0;; ++ends) {
        const std::span<const std::uint8_t> p = stream.subspan(off);
        if (p.size() < 2) {
            return p.empty() || p[0] <= (max_meta_size >> 8) ? verdict::need_more : verdict::plain;
        }
        if (load_u16be(p.data()) != 4) {
            return detect_new(p);
        }
        // metaLen 4: no New fits; only End as v2ray writes it (no data bit; error or not).
        if (p.size() < end_frame_size) {
            return p.size() <= at_status || p[at_status] == static_cast<std::uint8_t>(status::end)
                       ? verdict::need_more
                       : verdict::plain;
        }
        if (p[at_status] != static_cast<std::uint8_t>(status::end) ||
            (p[at_option] != 0 && p[at_option] != option_error) || ends == max_leading_ends) {
            return verdict::plain;
        }
        off += end_frame_size;
    }
}

bool only_leading_ends(std::span<const std::uint8_t> prefix) noexcept {
    if (prefix.empty() || prefix.size() % end_frame_size != 0 ||
        prefix.size() / end_frame_size > max_leading_ends) {
        return false;
    }
    for (std::size_t off = 0; off < prefix.size(); off += end_frame_size) {
        const auto p = prefix.subspan(off, end_frame_size);
        if (load_u16be(p.data()) != 4 || p[at_status] != static_cast<std::uint8_t>(status::end) ||
            (p[at_option] != 0 && p[at_option] != option_error)) {
            return false;
        }
    }
    return true;
}

namespace {

verdict detect_new(std::span<const std::uint8_t> p) noexcept {
    const std::size_t n = p.size();
    // metaLen: at most 512, so the first byte is at most 2.
    if (n < 1) {
        return verdict::need_more;
    }
    if (p[0] > (max_meta_size >> 8)) {
        return verdict::plain;
    }
    if (n < 2) {
        return verdict::need_more;
    }
    const std::size_t len = load_u16be(p.data());
    // The smallest New meta with an address: a one-letter domain.
    if (len > max_meta_size || len < new_meta_fixed + 2) {
        return verdict::plain;
    }
    // Bytes 2 and 3 are the session id: any value.
    if (n <= at_status) {
        return verdict::need_more;
    }
    if (p[at_status] != static_cast<std::uint8_t>(status::new_session)) {
        return verdict::plain;
    }
    if (n <= at_option) {
        return verdict::need_more;
    }
    // A client's New has the data bit or nothing; error or unknown bits never.
    if (p[at_option] != 0 && p[at_option] != option_data) {
        return verdict::plain;
    }
    if (n <= at_network) {
        return verdict::need_more;
    }
    if (p[at_network] != static_cast<std::uint8_t>(network::tcp) &&
        p[at_network] != static_cast<std::uint8_t>(network::udp)) {
        return verdict::plain;
    }
    // Bytes 7 and 8 are the port: any value.
    if (n <= at_addr_type) {
        return verdict::need_more;
    }
    if (!is_address_type(p[at_addr_type])) {
        return verdict::plain;
    }
    const auto type = static_cast<address_type>(p[at_addr_type]);
    if (type != address_type::domain) {
        return len >= new_meta_fixed + address_size(type, 0) ? verdict::mux : verdict::plain;
    }
    if (n <= at_domain_length) {
        return verdict::need_more;
    }
    const std::size_t name = p[at_domain_length];
    if (name == 0 || len < new_meta_fixed + address_size(type, name)) {
        return verdict::plain;
    }
    for (std::size_t i = 0; i < name; ++i) {
        if (n <= at_domain_length + 1 + i) {
            return verdict::need_more;
        }
        if (!is_domain_char(p[at_domain_length + 1 + i])) {
            return verdict::plain;
        }
    }
    return verdict::mux;
}

} // namespace

void encode_keep_head(std::span<std::uint8_t, keep_head_size> out, std::uint16_t id,
                      std::uint16_t length) noexcept {
    std::uint8_t* p = store_u16be(out.data(), 4);
    p = store_u16be(p, id);
    *p++ = static_cast<std::uint8_t>(status::keep);
    *p++ = option_data;
    store_u16be(p, length);
}

void encode_end(std::span<std::uint8_t, end_frame_size> out, std::uint16_t id,
                bool failed) noexcept {
    std::uint8_t* p = store_u16be(out.data(), 4);
    p = store_u16be(p, id);
    *p++ = static_cast<std::uint8_t>(status::end);
    *p = failed ? option_error : 0;
}

std::size_t encode_new_head(std::span<std::uint8_t> out, std::uint16_t id, network net,
                            std::uint16_t port, address_type type,
                            std::span<const std::uint8_t> addr, std::uint16_t length) noexcept {
    const bool domain = type == address_type::domain;
    if (!is_address_type(static_cast<std::uint8_t>(type)) || out.size() < max_new_head_size) {
        return 0;
    }
    if (domain ? (addr.empty() || addr.size() > 255) : addr.size() != address_size(type, 0)) {
        return 0;
    }
    const std::size_t meta = new_meta_fixed + (domain ? 1 : 0) + addr.size();
    std::uint8_t* p = store_u16be(out.data(), static_cast<std::uint16_t>(meta));
    p = store_u16be(p, id);
    *p++ = static_cast<std::uint8_t>(status::new_session);
    *p++ = length != 0 ? option_data : 0;
    *p++ = static_cast<std::uint8_t>(net);
    p = store_u16be(p, port);
    *p++ = static_cast<std::uint8_t>(type);
    if (domain) {
        *p++ = static_cast<std::uint8_t>(addr.size());
    }
    std::memcpy(p, addr.data(), addr.size());
    p += addr.size();
    if (length != 0) {
        p = store_u16be(p, length);
    }
    return static_cast<std::size_t>(p - out.data());
}

} // namespace kaminari::codec::mux

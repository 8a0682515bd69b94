#pragma once

// shadowsocks-android VPN mode (`-V` or `__android_vpn`): the app routes every socket of the
// device through its VPN, so each socket kaminaric opens to the server is first handed to the
// app to be "protected" (bound to the underlying network), before its connect. The exchange,
// per socket: connect to the AF_UNIX stream socket `protect_path` in the working directory,
// send one byte with the socket's descriptor attached (SCM_RIGHTS), read one byte back: 0 is
// protected, anything else (or nothing) is not, and that one connection fails.

#include <kaminari/net/stream.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/system/error_category.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <string>
#include <string_view>
#include <type_traits>

namespace kaminari::net {

/// Why a socket could not be protected (category "kaminari.protect"); message() says it in
/// one line starting with "VPN protect:".
enum class protect_errc {
    no_socket = 1, ///< protect_path does not exist in the working directory
    not_listening, ///< protect_path refused the connection: nothing listens on it
    unreachable,   ///< any other failure to connect to protect_path
    send_failed,   ///< the descriptor could not be sent
    no_reply,      ///< the app closed (or reset) without a reply byte
    refused,       ///< the app replied with a nonzero byte: it did not protect the socket
    timed_out,     ///< no reply within the limit (protect_timeout)
};

const boost::system::error_category& protect_category() noexcept;

inline error_code make_error_code(protect_errc e) noexcept {
    return {static_cast<int>(e), protect_category()};
}

/// Where shadowsocks-android listens, relative to the working directory it gives its plugins.
inline constexpr std::string_view default_protect_path = "protect_path";

/// The bound on one exchange, as v2ray-plugin and shadowsocks-rust have it.
inline constexpr std::chrono::milliseconds protect_timeout{3000};

/// Turns protecting on for every later connect_remote() in this process (kaminaric in VPN
/// mode). Called once, before any worker thread starts; never turned off.
void enable_protect(std::string path = std::string(default_protect_path));

/// The protect socket's path, or nullptr when protecting is off.
const std::string* protect_path() noexcept;

/// Hands `fd` (a socket not yet connected) to the app listening on `path` and waits for its
/// reply, within `limit`, on the caller's executor without blocking it. Returns a protect_errc
/// on failure. `fd` is duplicated at once: the caller may close it meanwhile (a deadline).
asio::awaitable<error_code> protect_socket(int fd, const std::string& path,
                                           std::chrono::milliseconds limit);

} // namespace kaminari::net

namespace boost::system {
template <>
struct is_error_code_enum<kaminari::net::protect_errc> : std::true_type {};
} // namespace boost::system

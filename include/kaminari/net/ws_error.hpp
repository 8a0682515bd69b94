#pragma once

// The boost::system error category for codec::errc, so that websocket framing and handshake
// failures travel as error_code through the Asio adapters (io_result), and the two conditions
// callers test instead of single codes (beast websocket/error.hpp):
//
//     if (ec == net::ws_condition::protocol_violation) { ... }  // any framing error
//     if (ec == net::ws_condition::handshake_failed) { ... }    // any handshake refusal

#include <kaminari/codec/errc.hpp>

#include <boost/system/error_category.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/error_condition.hpp>

#include <type_traits>

namespace kaminari::net {

/// Groups of codec::errc values.
enum class ws_condition {
    protocol_violation = 1, ///< the peer broke RFC 6455 framing, or sent a text frame
    handshake_failed,       ///< the opening handshake was refused or malformed
};

/// The category of codec::errc values, named "kaminari.ws". message() is one sentence per
/// code; default_error_condition() maps framing codes to protocol_violation and handshake
/// codes to handshake_failed (`closed`, `ok` and `need_more` belong to neither).
const boost::system::error_category& ws_category() noexcept;

/// The category of ws_condition, named "kaminari.ws.condition".
const boost::system::error_category& ws_condition_category() noexcept;

/// Makes an error_condition from a ws_condition (found by ADL for `ec == ws_condition::...`).
inline boost::system::error_condition make_error_condition(ws_condition c) noexcept {
    return {static_cast<int>(c), ws_condition_category()};
}

} // namespace kaminari::net

namespace kaminari::codec {

/// Makes an error_code in net::ws_category(). Declared in namespace codec so that ADL finds it
/// and `error_code ec = codec::errc::text_frame;` works. It lives in this net/ header because
/// the codec library itself has no Boost dependency.
inline boost::system::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), net::ws_category()};
}

} // namespace kaminari::codec

namespace boost::system {
template <>
struct is_error_code_enum<kaminari::codec::errc> : std::true_type {};
template <>
struct is_error_condition_enum<kaminari::net::ws_condition> : std::true_type {};
} // namespace boost::system

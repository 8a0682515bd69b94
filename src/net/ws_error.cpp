#include "kaminari/net/ws_error.hpp"

#include <string>

namespace kaminari::net {

namespace {

using codec::errc;

class ws_category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "kaminari.ws"; }

    std::string message(int ev) const override {
        switch (static_cast<errc>(ev)) {
        case errc::ok:
            return "The operation completed successfully.";
        case errc::need_more:
            return "More input is needed to complete the item.";
        case errc::reserved_bits:
            return "The peer set a reserved bit in a frame header without a negotiated "
                   "extension.";
        case errc::bad_opcode:
            return "The peer sent a frame with a reserved opcode.";
        case errc::fragmented_control:
            return "The peer sent a fragmented control frame.";
        case errc::control_too_long:
            return "The peer sent a control frame with a payload longer than 125 bytes.";
        case errc::bad_length:
            return "The peer sent a 64-bit payload length with the most significant bit set.";
        case errc::non_canonical_length:
            return "The peer encoded a payload length in more bytes than needed.";
        case errc::missing_mask:
            return "The client sent an unmasked frame.";
        case errc::unexpected_mask:
            return "The server sent a masked frame.";
        case errc::bad_continuation:
            return "The peer sent a continuation frame outside a fragmented message, or a new "
                   "message inside one.";
        case errc::text_frame:
            return "The peer sent a text frame, but the tunnel carries binary data only.";
        case errc::bad_close_payload:
            return "The peer sent a close frame with a 1-byte payload.";
        case errc::bad_close_code:
            return "The peer sent a close frame with a status code that must not be sent.";
        case errc::truncated_frame:
            return "The connection ended in the middle of a websocket frame.";
        case errc::closed:
            return "The websocket closing handshake has started, so no more data can be sent.";
        case errc::head_too_large:
            return "The HTTP head is larger than the 8 KiB limit.";
        case errc::too_many_headers:
            return "The HTTP head has more than 32 header lines.";
        case errc::bad_request_line:
            return "The HTTP request line or status line is malformed.";
        case errc::bad_header_line:
            return "An HTTP header line is malformed.";
        case errc::bad_method:
            return "The upgrade request does not use the GET method.";
        case errc::bad_http_version:
            return "The HTTP version is not HTTP/1.1.";
        case errc::missing_host:
            return "The upgrade request has no Host header, or more than one.";
        case errc::wrong_host:
            return "The upgrade request is for another host.";
        case errc::wrong_path:
            return "The upgrade request is for another path.";
        case errc::missing_upgrade:
            return "The Upgrade header does not list websocket.";
        case errc::missing_connection:
            return "The Connection header does not list Upgrade.";
        case errc::missing_version:
            return "The upgrade request has no Sec-WebSocket-Version header.";
        case errc::bad_version:
            return "The upgrade request asks for a websocket version other than 13.";
        case errc::bad_key:
            return "The Sec-WebSocket-Key header is missing, repeated, or not the base64 of 16 "
                   "bytes.";
        case errc::bad_status:
            return "The server answered the upgrade request with a status other than 101.";
        case errc::bad_accept:
            return "The Sec-WebSocket-Accept header is missing or does not match the key.";
        case errc::bad_protocol:
            return "The server answered with a Sec-WebSocket-Protocol the client did not offer.";
        }
        return "Unknown websocket error.";
    }

    boost::system::error_condition default_error_condition(int ev) const noexcept override {
        const auto e = static_cast<errc>(ev);
        if (e >= errc::reserved_bits && e <= errc::truncated_frame) {
            return ws_condition::protocol_violation;
        }
        if (e >= errc::head_too_large && e <= errc::bad_protocol) {
            return ws_condition::handshake_failed;
        }
        return {ev, *this};
    }
};

class ws_condition_category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "kaminari.ws.condition"; }

    std::string message(int ev) const override {
        switch (static_cast<ws_condition>(ev)) {
        case ws_condition::protocol_violation:
            return "The websocket peer violated the protocol.";
        case ws_condition::handshake_failed:
            return "The websocket handshake failed.";
        }
        return "Unknown websocket condition.";
    }
};

} // namespace

const boost::system::error_category& ws_category() noexcept {
    static const ws_category_impl instance;
    return instance;
}

const boost::system::error_category& ws_condition_category() noexcept {
    static const ws_condition_category_impl instance;
    return instance;
}

} // namespace kaminari::net

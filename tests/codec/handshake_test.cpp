#include "kaminari/codec/handshake.hpp"

#include "support/guarded_buffer.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kaminari::codec {
namespace {

std::span<const std::uint8_t> as_bytes(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::string as_string(std::span<const std::uint8_t> s) {
    return {reinterpret_cast<const char*>(s.data()), s.size()};
}

constexpr std::string_view sample_key = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr std::string_view sample_accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

const std::string good_request = "GET /ws HTTP/1.1\r\n"
                                 "Host: example.com\r\n"
                                 "Upgrade: websocket\r\n"
                                 "Connection: Upgrade\r\n"
                                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                 "Sec-WebSocket-Version: 13\r\n\r\n";

request_result parse(std::string_view req) {
    return parse_request(as_bytes(req), "example.com", "/ws");
}

TEST(Handshake, RfcSampleKeyAndAccept) {
    const std::string_view nonce = "the sample nonce";
    std::array<std::uint8_t, sec_key_nonce_size> n{};
    std::copy(nonce.begin(), nonce.end(), n.begin());
    EXPECT_EQ(to_string_view(make_sec_key(n)), sample_key);
    EXPECT_EQ(to_string_view(make_sec_accept(sample_key)), sample_accept);
    EXPECT_TRUE(is_valid_sec_key(sample_key));
}

TEST(Handshake, ValidatesKeys) {
    EXPECT_FALSE(is_valid_sec_key(""));
    EXPECT_FALSE(is_valid_sec_key("dGhlIHNhbXBsZSBub25jZQ="));   // 23 chars
    EXPECT_FALSE(is_valid_sec_key("dGhlIHNhbXBsZSBub25jZQ=x"));  // bad padding
    EXPECT_FALSE(is_valid_sec_key("dGhlIHNhbXBsZSBub25jZ!=="));  // bad alphabet
    EXPECT_FALSE(is_valid_sec_key("dGhlIHNhbXBsZSBub25jZQ==A")); // 25 chars
    EXPECT_FALSE(is_valid_sec_key("dGhlIHNhbXBsZSBub25jZQQQ"));  // 18 bytes
}

TEST(Handshake, HalfCloseAnnouncedOnlyByItsHeader) {
    EXPECT_FALSE(parse(good_request).half_close); // a third-party client: the server lingers
    for (const auto& [line, announced] : std::initializer_list<std::pair<std::string, bool>>{
             {"Kaminari-Half-Close: 1\r\n", true},
             {"kaminari-half-close:1\r\n", true},
             {"Kaminari-Half-Close: 0\r\n", false},
             {"Kaminari-Half-Close: yes\r\n", false},
             {"Kaminari-Half-Closed: 1\r\n", false}}) {
        std::string req = good_request;
        req.insert(req.size() - 2, line);
        const auto r = parse(req);
        EXPECT_EQ(r.err, errc::ok) << line;
        EXPECT_EQ(r.half_close, announced) << line;
    }
}

TEST(Handshake, KaminariHeadersSayWhatTheWebsocketCarries) {
    // A TCP connection, as before `udp` and `mux` existed.
    EXPECT_EQ(parse(good_request).what, carriage::stream);
    const std::initializer_list<std::pair<std::string, carriage>> cases{
        {"Kaminari-Udp: 1\r\n", carriage::udp},     {"kaminari-udp:1\r\n", carriage::udp},
        {"Kaminari-Udp: 0\r\n", carriage::stream},  {"Kaminari-Udp: true\r\n", carriage::stream},
        {"Kaminari-Udpx: 1\r\n", carriage::stream}, {"Kaminari-Mux: 1\r\n", carriage::mux},
        {"KAMINARI-MUX:1\r\n", carriage::mux},      {"Kaminari-Mux: 8\r\n", carriage::stream},
        {"Kaminari-Muxx: 1\r\n", carriage::stream}};
    for (const auto& c : cases) {
        std::string req = good_request;
        req.insert(req.size() - 2, c.first);
        const auto r = parse(req);
        EXPECT_EQ(r.err, errc::ok) << c.first;
        EXPECT_EQ(r.what, c.second) << c.first;
    }
    std::array<std::uint8_t, 512> out{};
    std::size_t n = encode_request(out, "example.com", "/ws", sample_key, {}, carriage::udp);
    std::string ours = good_request;
    ours.insert(ours.size() - 2, "Kaminari-Udp: 1\r\nKaminari-Half-Close: 1\r\n");
    EXPECT_EQ(as_string(std::span(out.data(), n)), ours);
    EXPECT_EQ(parse(ours).what, carriage::udp);
    n = encode_request(out, "example.com", "/ws", sample_key, {}, carriage::mux);
    ours = good_request;
    ours.insert(ours.size() - 2, "Kaminari-Mux: 1\r\nKaminari-Half-Close: 1\r\n");
    EXPECT_EQ(as_string(std::span(out.data(), n)), ours);
    EXPECT_EQ(parse(ours).what, carriage::mux);
}

TEST(Handshake, EncodesRequest) {
    std::array<std::uint8_t, 512> out{};
    const std::size_t n = encode_request(out, "example.com", "/ws", sample_key);
    // good_request as any client sends it, plus kaminaric's half-close announcement.
    std::string ours = good_request;
    ours.insert(ours.size() - 2, "Kaminari-Half-Close: 1\r\n");
    EXPECT_EQ(as_string(std::span(out.data(), n)), ours);
    const auto parsed = parse(ours);
    EXPECT_EQ(parsed.err, errc::ok);
    EXPECT_TRUE(parsed.half_close);
    // Too small a buffer gives 0, at every size below the needed one.
    for (std::size_t k = 0; k < n; ++k) {
        EXPECT_EQ(encode_request(std::span(out.data(), k), "example.com", "/ws", sample_key), 0u);
    }
}

TEST(Handshake, AcceptsGoodRequest) {
    const auto r = parse(good_request);
    ASSERT_EQ(r.err, errc::ok);
    EXPECT_EQ(r.consumed, good_request.size());
    EXPECT_EQ(r.key, sample_key);
    EXPECT_EQ(response_status(r.err), 101);
}

TEST(Handshake, EveryTruncatedRequestNeedsMore) {
    for (std::size_t k = 0; k < good_request.size(); ++k) {
        const auto r = parse(std::string_view(good_request).substr(0, k));
        ASSERT_EQ(r.err, errc::need_more) << "prefix " << k;
        EXPECT_EQ(r.consumed, 0u);
    }
}

errc classify(std::string_view in) {
    return classify_request(as_bytes(in), "example.com", "/ws");
}

TEST(Handshake, ClassifyAcceptsOnlyAGoodRequestAndWaitsForItsPrefixes) {
    EXPECT_EQ(classify(good_request), errc::ok);
    for (std::size_t k = 0; k < good_request.size(); ++k) {
        ASSERT_EQ(classify(std::string_view(good_request).substr(0, k)), errc::need_more)
            << "prefix " << k;
    }
}

TEST(Handshake, ClassifyDecidesAtTheFirstByteThatTells) {
    // Each is judged on these bytes alone, before any end of the head.
    EXPECT_EQ(classify("\x16\x03\x01\x02\x00"), errc::bad_request_line); // a TLS ClientHello
    EXPECT_EQ(classify("\r\n"), errc::bad_request_line);
    EXPECT_EQ(classify("P"), errc::bad_method);
    EXPECT_EQ(classify("POST /ws HTTP/1.1\r\n"), errc::bad_method);
    EXPECT_EQ(classify("GET /"), errc::need_more);
    EXPECT_EQ(classify("GET / "), errc::wrong_path);
    EXPECT_EQ(classify("GET /x"), errc::wrong_path);
    EXPECT_EQ(classify("GET /wsx"), errc::wrong_path);
    EXPECT_EQ(classify("GET /ws HTTP/1.0"), errc::bad_http_version);
    EXPECT_EQ(classify("GET /ws HTTP/1.1\r\nHost: example.com\r\n"), errc::need_more);
    // Past the request line, the complete head decides.
    EXPECT_EQ(classify("GET /ws HTTP/1.1\r\nHost: other.example\r\n\r\n"), errc::wrong_host);
    EXPECT_EQ(classify("GET /ws HTTP/1.1\r\nHost: example.com\r\n\r\n"), errc::missing_upgrade);
    // A head that never ends is not ours either, once it reaches the limit.
    std::string endless = "GET /ws HTTP/1.1\r\nHost: example.com\r\nX: ";
    endless.resize(max_head_size, 'a');
    EXPECT_EQ(classify(endless), errc::head_too_large);
}

TEST(Handshake, KeepsBytesAfterTheRequest) {
    const std::string with_frame = good_request + "\x82\x80\0\0\0\0pipelined";
    const auto r = parse(with_frame);
    ASSERT_EQ(r.err, errc::ok);
    EXPECT_EQ(r.consumed, good_request.size());
}

TEST(Handshake, AcceptsVariantsRealClientsSend) {
    const std::string_view ok_requests[] = {
        // Token lists, case-insensitive names and values, extra headers, OWS.
        "GET /ws HTTP/1.1\r\nhost: EXAMPLE.com\r\nupgrade: WebSocket\r\n"
        "connection: keep-alive, Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "sec-websocket-version: 13\r\nUser-Agent: x\r\n\r\n",
        // A port on Host (python websockets sends it for a non-default port).
        "GET /ws HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version:13\r\n\r\n",
        // Connection split over two header lines, tabs as OWS.
        "GET /ws HTTP/1.1\r\nHost:\texample.com\t\r\nUpgrade: h2c ,websocket\r\n"
        "Connection: keep-alive\r\nConnection: upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    };
    for (std::string_view req : ok_requests) {
        const auto r = parse(req);
        EXPECT_EQ(r.err, errc::ok) << req;
        EXPECT_EQ(r.consumed, req.size());
        EXPECT_EQ(r.key, sample_key);
    }
}

std::string replace(std::string s, std::string_view from, std::string_view to) {
    const auto at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return s.replace(at, from.size(), to);
}

struct bad_request {
    std::string text;
    errc expected;
    int status;
};

TEST(Handshake, RefusesBadRequests) {
    const std::string& g = good_request;
    const bad_request cases[] = {
        {replace(g, "GET ", "POST "), errc::bad_method, 400},
        {replace(g, "GET ", "get "), errc::bad_method, 400},
        {replace(g, "HTTP/1.1", "HTTP/1.0"), errc::bad_http_version, 400},
        {replace(g, "HTTP/1.1", "HTTP/11"), errc::bad_request_line, 400},
        {replace(g, "GET /ws HTTP/1.1", "GET  /ws HTTP/1.1"), errc::bad_request_line, 400},
        {replace(g, "GET /ws HTTP/1.1", "GET /ws"), errc::bad_request_line, 400},
        {replace(g, "Host: example.com\r\n", ""), errc::missing_host, 400},
        {replace(g, "Host: example.com\r\n", "Host: example.com\r\nHost: example.com\r\n"),
         errc::missing_host, 400},
        {replace(g, "example.com", "other.com"), errc::wrong_host, 404},
        {replace(g, "example.com", "example.com:"), errc::wrong_host, 404},
        {replace(g, "example.com", "example.com:80x"), errc::wrong_host, 404},
        {replace(g, "example.com", "example.co"), errc::wrong_host, 404},
        {replace(g, "/ws", "/wrong"), errc::wrong_path, 404},
        {replace(g, "/ws", "/ws?x=1"), errc::wrong_path, 404},
        {replace(g, "/ws", "/WS"), errc::wrong_path, 404},
        {replace(g, "Upgrade: websocket\r\n", ""), errc::missing_upgrade, 400},
        {replace(g, "Upgrade: websocket", "Upgrade: h2c"), errc::missing_upgrade, 400},
        {replace(g, "Connection: Upgrade\r\n", ""), errc::missing_connection, 400},
        {replace(g, "Connection: Upgrade", "Connection: keep-alive"), errc::missing_connection,
         400},
        {replace(g, "Sec-WebSocket-Version: 13\r\n", ""), errc::missing_version, 400},
        {replace(g, "Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"), errc::bad_version,
         426},
        {replace(g, "Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 13, 8"), errc::bad_version,
         426},
        {replace(g, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""), errc::bad_key, 400},
        {replace(g, "dGhlIHNhbXBsZSBub25jZQ==", "short=="), errc::bad_key, 400},
        {replace(g, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
         errc::bad_key, 400},
        {replace(g, "Upgrade: websocket", " Upgrade: websocket"), errc::bad_header_line, 400},
        {replace(g, "Upgrade: websocket", "Upgrade : websocket"), errc::bad_header_line, 400},
        {replace(g, "Upgrade: websocket", "Upgrade websocket"), errc::bad_header_line, 400},
        {replace(g, "Upgrade: websocket", "Upgrade: web\nsocket"), errc::bad_header_line, 400},
        {replace(g, "Upgrade: websocket", "Upgrade: web\x01socket"), errc::bad_header_line, 400},
        {replace(g, "/ws", "/w\rs"), errc::bad_request_line, 400},
    };
    for (const auto& c : cases) {
        const auto r = parse(c.text);
        EXPECT_EQ(r.err, c.expected) << c.text;
        EXPECT_EQ(response_status(r.err), c.status) << c.text;
        EXPECT_EQ(r.consumed, c.text.size()) << c.text;
        EXPECT_TRUE(r.key.empty());
    }
}

TEST(Handshake, WrongPathWinsOverMissingWebsocketHeaders) {
    // A prober's plain GET for another page looks like a web site's 404.
    const auto r = parse("GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n");
    EXPECT_EQ(r.err, errc::wrong_path);
    EXPECT_EQ(response_status(r.err), 404);
}

TEST(Handshake, HeadLimits) {
    // No blank line within max_head_size bytes: 431; below that, need more.
    std::string big = "GET /ws HTTP/1.1\r\nX-Pad: " + std::string(max_head_size, 'a');
    EXPECT_EQ(parse(std::string_view(big).substr(0, max_head_size - 1)).err, errc::need_more);
    const auto r = parse(std::string_view(big).substr(0, max_head_size));
    EXPECT_EQ(r.err, errc::head_too_large);
    EXPECT_EQ(response_status(r.err), 431);
    // A head of exactly max_head_size bytes is accepted, with anything after it.
    std::string exact = good_request;
    exact.insert(exact.size() - 2,
                 "X-Pad: " + std::string(max_head_size - good_request.size() - 9, 'a') + "\r\n");
    ASSERT_EQ(exact.size(), max_head_size);
    EXPECT_EQ(parse(exact + "tail").err, errc::ok);
    // 32 header lines are fine, 33 are not.
    std::string many = good_request;
    for (int i = 0; i < 27; ++i) {
        many.insert(many.size() - 2, "X-A: b\r\n");
    }
    EXPECT_EQ(parse(many).err, errc::ok);
    many.insert(many.size() - 2, "X-A: b\r\n");
    EXPECT_EQ(parse(many).err, errc::too_many_headers);
    EXPECT_EQ(response_status(errc::too_many_headers), 431);
}

std::string error_response(errc reason) {
    std::array<std::uint8_t, 512> out{};
    const std::size_t n = encode_error_response(out, reason);
    EXPECT_GT(n, 0u);
    return as_string(std::span(out.data(), n));
}

void expect_well_formed(const std::string& resp) {
    const auto blank = resp.find("\r\n\r\n");
    ASSERT_NE(blank, std::string::npos);
    const std::string body = resp.substr(blank + 4);
    EXPECT_NE(resp.find("Content-Length: " + std::to_string(body.size()) + "\r\n"),
              std::string::npos)
        << resp;
    EXPECT_NE(resp.find("Connection: close\r\n"), std::string::npos);
    EXPECT_NE(resp.find("Content-Type: text/html\r\n"), std::string::npos);
}

TEST(Handshake, EncodesErrorResponses) {
    const std::string r404 = error_response(errc::wrong_path);
    EXPECT_EQ(r404.rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u) << r404;
    EXPECT_NE(r404.find("<h1>404 Not Found</h1>"), std::string::npos);
    expect_well_formed(r404);

    const std::string r400 = error_response(errc::bad_key);
    EXPECT_EQ(r400.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u);
    expect_well_formed(r400);

    const std::string r426 = error_response(errc::bad_version);
    EXPECT_EQ(r426.rfind("HTTP/1.1 426 Upgrade Required\r\n", 0), 0u);
    EXPECT_NE(r426.find("\r\nSec-WebSocket-Version: 13\r\n"), std::string::npos);
    expect_well_formed(r426);

    const std::string r431 = error_response(errc::head_too_large);
    EXPECT_EQ(r431.rfind("HTTP/1.1 431 Request Header Fields Too Large\r\n", 0), 0u);
    expect_well_formed(r431);

    std::array<std::uint8_t, 16> small{};
    EXPECT_EQ(encode_error_response(small, errc::wrong_path), 0u);
}

const std::string good_response = "HTTP/1.1 101 Switching Protocols\r\n"
                                  "Upgrade: websocket\r\n"
                                  "Connection: Upgrade\r\n"
                                  "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

TEST(Handshake, EncodesAcceptResponse) {
    std::array<std::uint8_t, 256> out{};
    const std::size_t n = encode_accept_response(out, sample_key);
    EXPECT_EQ(as_string(std::span(out.data(), n)), good_response);
    EXPECT_EQ(encode_accept_response(std::span(out.data(), 20), sample_key), 0u);
}

TEST(Handshake, ParsesResponseAndKeepsLeftover) {
    const std::string with_frame = good_response + "\x82\x02hi";
    const auto r = parse_response(as_bytes(with_frame), sample_key);
    ASSERT_EQ(r.err, errc::ok);
    EXPECT_EQ(r.status, 101);
    EXPECT_EQ(r.consumed, good_response.size());
    for (std::size_t k = 0; k < good_response.size(); ++k) {
        ASSERT_EQ(
            parse_response(as_bytes(std::string_view(good_response).substr(0, k)), sample_key).err,
            errc::need_more)
            << k;
    }
}

TEST(Handshake, RefusesBadResponses) {
    const std::string& g = good_response;
    const std::pair<std::string, errc> cases[] = {
        {replace(g, "101 Switching Protocols", "200 OK"), errc::bad_status},
        {error_response(errc::wrong_path), errc::bad_status},
        {replace(g, "HTTP/1.1", "HTTP/1.0"), errc::bad_http_version},
        {replace(g, "HTTP/1.1 101", "HTTP/1.1 1x1"), errc::bad_request_line},
        {replace(g, "HTTP/1.1 101", "HTTP/1.1101"), errc::bad_request_line},
        {replace(g, "Upgrade: websocket\r\n", ""), errc::missing_upgrade},
        {replace(g, "Connection: Upgrade\r\n", ""), errc::missing_connection},
        {replace(g, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "s3pPLMBiTxaQ9kYGzzhZRbK+xOp="),
         errc::bad_accept},
        {replace(g, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", ""),
         errc::bad_accept},
        {replace(g, "Upgrade: websocket", "Upgrade websocket"), errc::bad_header_line},
    };
    for (const auto& [text, expected] : cases) {
        EXPECT_EQ(parse_response(as_bytes(text), sample_key).err, expected) << text;
    }
    EXPECT_EQ(parse_response(as_bytes(error_response(errc::wrong_path)), sample_key).status, 404);
    // Status line without a reason phrase is fine.
    EXPECT_EQ(parse_response(as_bytes(replace(g, " Switching Protocols", "")), sample_key).err,
              errc::ok);
}

std::string with_protocol(std::string_view lines) {
    std::string req = good_request;
    req.insert(req.size() - 2, lines);
    return req;
}

TEST(Handshake, EarlyDataInTheRequest) {
    // One base64 token of at least one byte, in either alphabet, padded or not: early data.
    struct row {
        std::string_view line;
        std::string_view token; // empty: not early data
        std::size_t size;
    };
    for (const row& r : std::initializer_list<row>{
             {"Sec-WebSocket-Protocol: aGVsbG8\r\n", "aGVsbG8", 5},
             {"sec-websocket-protocol:aGVsbG8=\r\n", "aGVsbG8=", 5},
             {"Sec-WebSocket-Protocol: \t-_-_\t\r\n", "-_-_", 3},
             {"Sec-WebSocket-Protocol: +/+/\r\n", "+/+/", 3},
             {"Sec-WebSocket-Protocol: chat\r\n", "chat", 3}, // like Xray: a name that decodes
             // Ordinary subprotocol offers: ignored.
             {"Sec-WebSocket-Protocol: chat, superchat\r\n", "", 0},
             {"Sec-WebSocket-Protocol: aGVs,bG8\r\n", "", 0},
             {"Sec-WebSocket-Protocol: aGVs bG8\r\n", "", 0},
             {"Sec-WebSocket-Protocol: aGVsbG8\r\nSec-WebSocket-Protocol: aGVsbG8\r\n", "", 0},
             {"Sec-WebSocket-Protocol: mqtt.v5\r\n", "", 0},
             {"Sec-WebSocket-Protocol: Q\r\n", "", 0},
             {"Sec-WebSocket-Protocol: QQ===\r\n", "", 0},
             {"Sec-WebSocket-Protocol: ==\r\n", "", 0},
             {"Sec-WebSocket-Protocol:\r\n", "", 0},
             {"Sec-WebSocket-Protocols: aGVsbG8\r\n", "", 0},
         }) {
        const std::string req = with_protocol(r.line); // the result points into it
        const auto p = parse(req);
        ASSERT_EQ(p.err, errc::ok) << r.line;
        EXPECT_EQ(p.early_data, r.token) << r.line;
        EXPECT_EQ(p.early_data_size, r.size) << r.line;
    }
    EXPECT_TRUE(parse(good_request).early_data.empty());
    // A refused request carries none.
    const std::string other =
        replace(with_protocol("Sec-WebSocket-Protocol: aGVsbG8\r\n"), "GET /ws", "GET /other");
    const auto refused = parse(other);
    EXPECT_EQ(refused.err, errc::wrong_path);
    EXPECT_TRUE(refused.early_data.empty());
    EXPECT_EQ(refused.early_data_size, 0u);
}

TEST(Handshake, EncodesRequestWithEarlyData) {
    // 2048 bytes, the most kaminaric sends, fit in a request with room to spare.
    std::vector<std::uint8_t> data(2048);
    for (std::size_t i = 0; i < data.size(); ++i) {
        data[i] = static_cast<std::uint8_t>(i * 7);
    }
    std::string token(base64url_encoded_size(data.size()), '?');
    base64url_encode(data, token);
    std::vector<std::uint8_t> out(max_head_size);
    const std::size_t n = encode_request(out, "example.com", "/ws", sample_key, token);
    ASSERT_GT(n, 0u);
    const std::string text = as_string(std::span(out.data(), n));
    EXPECT_NE(text.find("\r\nSec-WebSocket-Protocol: " + token + "\r\n"), std::string::npos);
    const auto p = parse(text);
    ASSERT_EQ(p.err, errc::ok);
    EXPECT_EQ(p.consumed, n);
    EXPECT_TRUE(p.half_close);
    EXPECT_EQ(p.early_data, token);
    ASSERT_EQ(p.early_data_size, data.size());
    std::vector<std::uint8_t> decoded(p.early_data_size);
    ASSERT_EQ(base64_decode(p.early_data, decoded), std::optional<std::size_t>(data.size()));
    EXPECT_EQ(decoded, data);
    for (std::size_t k = 0; k < n; ++k) {
        EXPECT_EQ(encode_request(std::span(out.data(), k), "example.com", "/ws", sample_key, token),
                  0u);
    }
    // Every truncation of it needs more.
    for (std::size_t k = 0; k < n; ++k) {
        ASSERT_EQ(parse(std::string_view(text).substr(0, k)).err, errc::need_more) << k;
    }
}

TEST(Handshake, EarlyDataSizeIsBounded) {
    // The most a head can carry (max_early_data_size bytes) is taken; a head past the limit
    // is refused as too large before any decoding.
    const std::size_t room = max_head_size - good_request.size() - 26;
    const std::string fits =
        with_protocol("Sec-WebSocket-Protocol: " + std::string(room, 'A') + "\r\n");
    ASSERT_EQ(fits.size(), max_head_size);
    const auto p = parse(fits);
    ASSERT_EQ(p.err, errc::ok);
    EXPECT_EQ(p.early_data_size, room / 4 * 3 + (room % 4 == 0 ? 0 : room % 4 - 1));
    EXPECT_LE(p.early_data_size, max_early_data_size);
    const std::string over =
        with_protocol("Sec-WebSocket-Protocol: " + std::string(room + 1, 'A') + "\r\n");
    EXPECT_EQ(parse(over).err, errc::head_too_large);
}

TEST(Handshake, AcceptResponseEchoesEarlyData) {
    std::array<std::uint8_t, 512> out{};
    const std::size_t n = encode_accept_response(out, sample_key, "aGVsbG8");
    std::string want = good_response;
    want.insert(want.size() - 2, "Sec-WebSocket-Protocol: aGVsbG8\r\n");
    EXPECT_EQ(as_string(std::span(out.data(), n)), want);
    for (std::size_t k = 0; k < n; ++k) {
        EXPECT_EQ(encode_accept_response(std::span(out.data(), k), sample_key, "aGVsbG8"), 0u);
    }
}

TEST(Handshake, ResponseEchoOfEarlyData) {
    const std::string echoed =
        replace(good_response, "Connection: Upgrade\r\n",
                "Connection: Upgrade\r\nSec-WebSocket-Protocol: aGVsbG8\r\n");
    // Echoed unchanged: the server took the early data.
    auto r = parse_response(as_bytes(echoed), sample_key, "aGVsbG8");
    ASSERT_EQ(r.err, errc::ok);
    EXPECT_TRUE(r.protocol_echoed);
    // Not echoed: the server ignored the header; the client sends the bytes again.
    r = parse_response(as_bytes(good_response), sample_key, "aGVsbG8");
    ASSERT_EQ(r.err, errc::ok);
    EXPECT_FALSE(r.protocol_echoed);
    // Another value, several, or a different case: the handshake fails.
    for (const std::string& bad :
         {replace(echoed, "aGVsbG8", "aGVsbG9"), replace(echoed, "aGVsbG8", "AGVSBG8"),
          replace(echoed, "aGVsbG8", "aGVsbG8, chat"),
          replace(echoed, "Sec-WebSocket-Protocol: aGVsbG8\r\n",
                  "Sec-WebSocket-Protocol: aGVsbG8\r\nSec-WebSocket-Protocol: aGVsbG8\r\n")}) {
        EXPECT_EQ(parse_response(as_bytes(bad), sample_key, "aGVsbG8").err, errc::bad_protocol)
            << bad;
    }
    // Without an offer the header is not checked (as before early data existed).
    r = parse_response(as_bytes(echoed), sample_key);
    EXPECT_EQ(r.err, errc::ok);
    EXPECT_FALSE(r.protocol_echoed);
    // Every truncation of the echoed response needs more.
    for (std::size_t k = 0; k < echoed.size(); ++k) {
        ASSERT_EQ(
            parse_response(as_bytes(std::string_view(echoed).substr(0, k)), sample_key, "aGVsbG8")
                .err,
            errc::need_more)
            << k;
    }
}

TEST(Handshake, NeverReadsPastTheInput) {
    test::guarded_buffer guard(max_head_size + 64);
    const std::string inputs[] = {
        good_request,
        good_response,
        "GET /ws HTTP/1.1\r\nHost: example.com\r\nX: " + std::string(max_head_size, 'x'),
        std::string(max_head_size + 10, '\r'),
    };
    for (const std::string& in : inputs) {
        for (std::size_t k = 0; k <= in.size(); ++k) {
            const auto bytes = guard.place(std::string_view(in).substr(0, k));
            (void)parse_request(bytes, "example.com", "/ws");
            (void)parse_response(bytes, sample_key);
        }
    }
}

} // namespace
} // namespace kaminari::codec

#include "kaminari/codec/handshake.hpp"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <span>

namespace kaminari::codec {

namespace {

constexpr std::string_view ws_guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

constexpr char lower(char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (lower(a[i]) != lower(b[i])) {
            return false;
        }
    }
    return true;
}

constexpr bool is_ows(char c) noexcept {
    return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && is_ows(s.front())) {
        s.remove_prefix(1);
    }
    while (!s.empty() && is_ows(s.back())) {
        s.remove_suffix(1);
    }
    return s;
}

// RFC 9110 §5.6.2 tchar.
constexpr std::array<bool, 256> tchar_table = [] {
    std::array<bool, 256> t{};
    for (int c = '0'; c <= '9'; ++c) {
        t[c] = true;
    }
    for (int c = 'a'; c <= 'z'; ++c) {
        t[c] = true;
        t[c - 'a' + 'A'] = true;
    }
    for (char c : std::string_view("!#$%&'*+-.^_`|~")) {
        t[static_cast<unsigned char>(c)] = true;
    }
    return t;
}();

constexpr bool is_tchar(char c) noexcept {
    return tchar_table[static_cast<unsigned char>(c)];
}

bool is_token(std::string_view s) noexcept {
    if (s.empty()) {
        return false;
    }
    for (char c : s) {
        if (!is_tchar(c)) {
            return false;
        }
    }
    return true;
}

// True when the comma-separated list `value` holds `token` (case-insensitive, OWS trimmed).
bool has_token(std::string_view value, std::string_view token) noexcept {
    while (true) {
        const std::size_t comma = value.find(',');
        if (iequals(trim(value.substr(0, comma)), token)) {
            return true;
        }
        if (comma == std::string_view::npos) {
            return false;
        }
        value.remove_prefix(comma + 1);
    }
}

bool host_matches(std::string_view got, std::string_view want) noexcept {
    if (iequals(got, want)) {
        return true;
    }
    // `want:port`, the port being one or more digits.
    if (got.size() <= want.size() + 1 || !iequals(got.substr(0, want.size()), want) ||
        got[want.size()] != ':') {
        return false;
    }
    for (char c : got.substr(want.size() + 1)) {
        if (c < '0' || c > '9') {
            return false;
        }
    }
    return true;
}

struct header_field {
    std::string_view name;
    std::string_view value;
};

// A complete head split into its first line and header fields.
struct head {
    errc err = errc::need_more;
    std::size_t size = 0;
    std::string_view first_line;
    std::array<header_field, max_headers> fields; ///< the first `count` are set
    std::size_t count = 0;
};

// Finds the end of the head and splits it into lines and fields.
void split_head(std::span<const std::uint8_t> in, head& h) noexcept {
    const std::string_view all(reinterpret_cast<const char*>(in.data()), in.size());
    const std::string_view window = all.substr(0, max_head_size);
    const std::size_t blank = window.find("\r\n\r\n");
    if (blank == std::string_view::npos) {
        // The whole head must fit in max_head_size bytes (431 on the server).
        h.err = in.size() >= max_head_size ? errc::head_too_large : errc::need_more;
        return;
    }
    h.size = blank + 4;
    std::string_view rest = all.substr(0, blank + 2);
    bool first = true;
    while (!rest.empty()) {
        const std::size_t eol = rest.find("\r\n");
        const std::string_view line = rest.substr(0, eol);
        rest.remove_prefix(eol + 2);
        // A bare CR or LF inside a line is not HTTP/1.1 framing (RFC 9112 §2.2).
        if (line.find('\r') != std::string_view::npos ||
            line.find('\n') != std::string_view::npos) {
            h.err = first ? errc::bad_request_line : errc::bad_header_line;
            return;
        }
        if (first) {
            h.first_line = line;
            first = false;
            continue;
        }
        // Obsolete line folding is rejected (RFC 9112 §5.2).
        if (line.empty() || is_ows(line.front())) {
            h.err = errc::bad_header_line;
            return;
        }
        const std::size_t colon = line.find(':');
        // A field name is a token with no whitespace before the colon (RFC 9112 §5.1).
        if (colon == std::string_view::npos || !is_token(line.substr(0, colon))) {
            h.err = errc::bad_header_line;
            return;
        }
        const std::string_view value = trim(line.substr(colon + 1));
        // Field values hold no control characters other than HTAB (RFC 9110 §5.5).
        for (char c : value) {
            const auto u = static_cast<unsigned char>(c);
            if ((u < 0x20 && c != '\t') || u == 0x7f) {
                h.err = errc::bad_header_line;
                return;
            }
        }
        // At most max_headers fields (431 on the server).
        if (h.count == max_headers) {
            h.err = errc::too_many_headers;
            return;
        }
        h.fields[h.count++] = {line.substr(0, colon), value};
    }
    h.err = errc::ok;
}

constexpr bool is_base64_char(char c) noexcept {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

// Appends text to a caller's buffer, remembering whether it ran out of room.
class writer {
public:
    explicit writer(std::span<std::uint8_t> out) noexcept
        : out_(out) {}

    writer& operator<<(std::string_view s) noexcept {
        if (ok_ && out_.size() - pos_ >= s.size()) {
            std::memcpy(out_.data() + pos_, s.data(), s.size());
            pos_ += s.size();
        } else {
            ok_ = false;
        }
        return *this;
    }

    writer& operator<<(std::size_t v) noexcept {
        char digits[20];
        std::size_t n = 0;
        do {
            digits[sizeof digits - 1 - n++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v != 0);
        return *this << std::string_view(digits + sizeof digits - n, n);
    }

    std::size_t result() const noexcept { return ok_ ? pos_ : 0; }

private:
    std::span<std::uint8_t> out_;
    std::size_t pos_ = 0;
    bool ok_ = true;
};

std::string_view reason_phrase(int status) noexcept {
    switch (status) {
    case 404:
        return "Not Found";
    case 426:
        return "Upgrade Required";
    case 431:
        return "Request Header Fields Too Large";
    default:
        return "Bad Request";
    }
}

// SHA-1 of a short input. OpenSSL 3's SHA1() looks the algorithm up in its provider on every
// call (EVP_Q_digest), more than the hashing itself costs for 60 bytes: this looks it up once
// per process and keeps one digest context per thread.
void sha1(std::span<const unsigned char> in, unsigned char (&out)[SHA_DIGEST_LENGTH]) noexcept {
    static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA1", nullptr);
    struct context {
        EVP_MD_CTX* ctx = EVP_MD_CTX_new();
        ~context() { EVP_MD_CTX_free(ctx); }
    };
    thread_local context local;
    unsigned int len = 0;
    if (md == nullptr || local.ctx == nullptr || EVP_DigestInit_ex2(local.ctx, md, nullptr) != 1 ||
        EVP_DigestUpdate(local.ctx, in.data(), in.size()) != 1 ||
        EVP_DigestFinal_ex(local.ctx, out, &len) != 1) {
        SHA1(in.data(), in.size(), out); // out of memory for the cached state: the slow way
    }
}

} // namespace

sec_key make_sec_key(std::span<const std::uint8_t, sec_key_nonce_size> nonce) noexcept {
    unsigned char text[sec_key{}.size() + 1];
    EVP_EncodeBlock(text, nonce.data(), static_cast<int>(nonce.size()));
    sec_key key;
    std::memcpy(key.data(), text, key.size());
    return key;
}

sec_accept make_sec_accept(std::string_view key) noexcept {
    // SHA-1 over key + GUID; a key is short, so a fixed buffer suffices for any valid one.
    unsigned char digest[SHA_DIGEST_LENGTH];
    unsigned char input[128];
    const std::size_t n = key.size() + ws_guid.size();
    if (n <= sizeof input) {
        std::memcpy(input, key.data(), key.size());
        std::memcpy(input + key.size(), ws_guid.data(), ws_guid.size());
        sha1({input, n}, digest);
    } else {
        // An over-long key can never be accepted; hash the GUID alone so the result is defined.
        sha1({reinterpret_cast<const unsigned char*>(ws_guid.data()), ws_guid.size()}, digest);
    }
    unsigned char text[sec_accept{}.size() + 1];
    EVP_EncodeBlock(text, digest, SHA_DIGEST_LENGTH);
    sec_accept accept;
    std::memcpy(accept.data(), text, accept.size());
    return accept;
}

bool is_valid_sec_key(std::string_view key) noexcept {
    // 16 bytes are 22 base64 characters and "==" padding (§4.2.1 item 5).
    if (key.size() != 24 || key[22] != '=' || key[23] != '=') {
        return false;
    }
    for (char c : key.substr(0, 22)) {
        if (!is_base64_char(c)) {
            return false;
        }
    }
    return true;
}

std::size_t encode_request(std::span<std::uint8_t> out, std::string_view host,
                           std::string_view path, std::string_view key, std::string_view protocol,
                           carriage what) noexcept {
    writer w(out);
    w << "GET " << path << " HTTP/1.1\r\n"
      << "Host: " << host << "\r\n"
      << "Upgrade: websocket\r\n"
      << "Connection: Upgrade\r\n"
      << "Sec-WebSocket-Key: " << key << "\r\n"
      << "Sec-WebSocket-Version: 13\r\n";
    if (!protocol.empty()) {
        w << "Sec-WebSocket-Protocol: " << protocol << "\r\n";
    }
    if (what == carriage::udp) {
        w << udp_header << ": 1\r\n";
    } else if (what == carriage::mux) {
        w << mux_header << ": 1\r\n";
    }
    w << half_close_header << ": 1\r\n\r\n";
    return w.result();
}

request_result parse_request(std::span<const std::uint8_t> in, std::string_view host,
                             std::string_view path) noexcept {
    head h;
    split_head(in, h);
    if (h.err != errc::ok) {
        return {h.err, h.err == errc::need_more ? 0 : h.size, {}};
    }
    request_result r{errc::ok, h.size, {}};
    auto fail = [&r](errc e) {
        r.err = e;
        r.key = {};
        r.early_data = {};
        r.early_data_size = 0;
        return r;
    };

    // request-line = method SP request-target SP HTTP-version (RFC 9112 §3).
    const std::string_view line = h.first_line;
    const std::size_t sp1 = line.find(' ');
    const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) {
        return fail(errc::bad_request_line);
    }
    const std::string_view method = line.substr(0, sp1);
    const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const std::string_view version = line.substr(sp2 + 1);
    if (!is_token(method) || target.empty() || version.size() != 8 ||
        version.substr(0, 5) != "HTTP/" || version[6] != '.') {
        return fail(errc::bad_request_line);
    }

    std::string_view host_value;
    std::size_t host_count = 0;
    bool upgrade = false;
    bool connection = false;
    bool has_version = false;
    bool version_13 = true;
    std::size_t key_count = 0;
    std::string_view protocol;
    std::size_t protocol_count = 0;
    for (std::size_t i = 0; i < h.count; ++i) {
        const header_field& f = h.fields[i];
        if (iequals(f.name, "Host")) {
            host_value = f.value;
            ++host_count;
        } else if (iequals(f.name, "Upgrade")) {
            upgrade = upgrade || has_token(f.value, "websocket");
        } else if (iequals(f.name, "Connection")) {
            connection = connection || has_token(f.value, "Upgrade");
        } else if (iequals(f.name, "Sec-WebSocket-Version")) {
            has_version = true;
            version_13 = version_13 && f.value == "13";
        } else if (iequals(f.name, "Sec-WebSocket-Key")) {
            r.key = f.value;
            ++key_count;
        } else if (iequals(f.name, half_close_header)) {
            r.half_close = f.value == "1";
        } else if (iequals(f.name, udp_header)) {
            if (f.value == "1") {
                r.what = carriage::udp;
            }
        } else if (iequals(f.name, mux_header)) {
            if (f.value == "1") {
                r.what = carriage::mux;
            }
        } else if (iequals(f.name, "Sec-WebSocket-Protocol")) {
            protocol = f.value;
            ++protocol_count;
        }
    }

    // An HTTP/1.1 request carries exactly one Host (RFC 9112 §3.2).
    if (host_count != 1) {
        return fail(errc::missing_host);
    }
    // Another site on this address: answer as a web server would (404).
    if (!host_matches(host_value, host)) {
        return fail(errc::wrong_host);
    }
    // Another page on this site (404).
    if (target != path) {
        return fail(errc::wrong_path);
    }
    // The handshake is a GET (§4.1).
    if (method != "GET") {
        return fail(errc::bad_method);
    }
    // The handshake needs HTTP/1.1 or higher; we speak only 1.1 (§4.1).
    if (version != "HTTP/1.1") {
        return fail(errc::bad_http_version);
    }
    // Upgrade must list the websocket keyword (§4.2.1 item 3).
    if (!upgrade) {
        return fail(errc::missing_upgrade);
    }
    // Connection must list the Upgrade token (§4.2.1 item 4).
    if (!connection) {
        return fail(errc::missing_connection);
    }
    // Sec-WebSocket-Version is required (§4.2.1 item 6).
    if (!has_version) {
        return fail(errc::missing_version);
    }
    // Only version 13 is supported; the client learns that from a 426 (§4.4).
    if (!version_13) {
        return fail(errc::bad_version);
    }
    // Exactly one key, the base64 of a 16-byte nonce (§4.2.1 item 5).
    if (key_count != 1 || !is_valid_sec_key(r.key)) {
        return fail(errc::bad_key);
    }
    // Early data: one Sec-WebSocket-Protocol line whose whole value is one base64 token of at
    // least one byte (Xray's rule). Several lines or a list are ordinary subprotocol offers
    // (RFC 9110 §5.3 joins repeated lines into a list); ignored, like anything undecodable.
    if (protocol_count == 1) {
        const auto size = base64_decoded_size(protocol);
        if (size && *size != 0 && *size <= max_early_data_size) {
            r.early_data = protocol;
            r.early_data_size = *size;
        }
    }
    return r;
}

errc classify_request(std::span<const std::uint8_t> in, std::string_view host,
                      std::string_view path) noexcept {
    const std::string_view got(reinterpret_cast<const char*>(in.data()), in.size());
    std::size_t pos = 0;
    // Compares the next piece of the request line; `why` when the bytes differ from it.
    auto expect = [&](std::string_view want, errc why) {
        const std::size_t n = std::min(want.size(), got.size() - pos);
        if (got.compare(pos, n, want, 0, n) != 0) {
            return why;
        }
        pos += n;
        return n < want.size() ? errc::need_more : errc::ok;
    };
    errc e = expect("GET ", errc::bad_method);
    if (e == errc::bad_method && !is_tchar(got.front())) {
        e = errc::bad_request_line; // not even a method: not HTTP
    }
    if (e == errc::ok) {
        e = expect(path, errc::wrong_path);
    }
    if (e == errc::ok) {
        e = expect(" ", errc::wrong_path); // a longer path
    }
    if (e == errc::ok) {
        e = expect("HTTP/1.1\r\n", errc::bad_http_version);
    }
    if (e != errc::ok) {
        return e;
    }
    return parse_request(in, host, path).err;
}

int response_status(errc reason) noexcept {
    switch (reason) {
    case errc::ok:
        return 101;
    case errc::head_too_large:
    case errc::too_many_headers:
        return 431;
    case errc::wrong_host:
    case errc::wrong_path:
        return 404;
    case errc::bad_version:
        return 426;
    default:
        return 400;
    }
}

std::size_t encode_accept_response(std::span<std::uint8_t> out, std::string_view key,
                                   std::string_view protocol) noexcept {
    const sec_accept accept = make_sec_accept(key);
    writer w(out);
    w << "HTTP/1.1 101 Switching Protocols\r\n"
      << "Upgrade: websocket\r\n"
      << "Connection: Upgrade\r\n"
      << "Sec-WebSocket-Accept: " << to_string_view(accept) << "\r\n";
    if (!protocol.empty()) {
        w << "Sec-WebSocket-Protocol: " << protocol << "\r\n";
    }
    w << "\r\n";
    return w.result();
}

std::size_t encode_error_response(std::span<std::uint8_t> out, errc reason) noexcept {
    const int status = response_status(reason);
    const std::string_view phrase = reason_phrase(status);
    const auto code = static_cast<std::size_t>(status);
    // The body is the short page a web server shows for the status.
    const std::size_t body_size =
        std::string_view("<html>\r\n<head><title>").size() + 4 + phrase.size() +
        std::string_view("</title></head>\r\n<body>\r\n"
                         "<center><h1>")
            .size() +
        4 + phrase.size() + std::string_view("</h1></center>\r\n</body>\r\n</html>\r\n").size();
    writer w(out);
    w << "HTTP/1.1 " << code << " " << phrase << "\r\n"
      << "Content-Type: text/html\r\n"
      << "Content-Length: " << body_size << "\r\n"
      << "Connection: close\r\n";
    if (status == 426) {
        w << "Upgrade: websocket\r\n"
          << "Sec-WebSocket-Version: 13\r\n";
    }
    w << "\r\n"
      << "<html>\r\n<head><title>" << code << " " << phrase << "</title></head>\r\n<body>\r\n"
      << "<center><h1>" << code << " " << phrase << "</h1></center>\r\n</body>\r\n</html>\r\n";
    return w.result();
}

response_result parse_response(std::span<const std::uint8_t> in, std::string_view key,
                               std::string_view protocol) noexcept {
    head h;
    split_head(in, h);
    if (h.err != errc::ok) {
        return {h.err, h.err == errc::need_more ? 0 : h.size, 0};
    }
    response_result r{errc::ok, h.size, 0};

    // status-line = HTTP-version SP status-code SP [reason-phrase] (RFC 9112 §4).
    const std::string_view line = h.first_line;
    if (line.size() < 12 || line.substr(0, 5) != "HTTP/" || line[6] != '.' || line[8] != ' ' ||
        (line.size() > 12 && line[12] != ' ')) {
        r.err = errc::bad_request_line;
        return r;
    }
    for (std::size_t i = 9; i < 12; ++i) {
        if (line[i] < '0' || line[i] > '9') {
            r.err = errc::bad_request_line;
            return r;
        }
        r.status = r.status * 10 + (line[i] - '0');
    }
    // The server must answer in HTTP/1.1 (§4.1).
    if (line.substr(0, 8) != "HTTP/1.1") {
        r.err = errc::bad_http_version;
        return r;
    }
    // Anything but 101 means the server did not switch (§4.1 item 1).
    if (r.status != 101) {
        r.err = errc::bad_status;
        return r;
    }
    bool upgrade = false;
    bool connection = false;
    std::size_t accept_count = 0;
    std::string_view accept;
    std::size_t protocol_count = 0;
    std::string_view chosen;
    for (std::size_t i = 0; i < h.count; ++i) {
        const header_field& f = h.fields[i];
        if (iequals(f.name, "Upgrade")) {
            upgrade = upgrade || has_token(f.value, "websocket");
        } else if (iequals(f.name, "Connection")) {
            connection = connection || has_token(f.value, "Upgrade");
        } else if (iequals(f.name, "Sec-WebSocket-Accept")) {
            accept = f.value;
            ++accept_count;
        } else if (iequals(f.name, "Sec-WebSocket-Protocol")) {
            chosen = f.value;
            ++protocol_count;
        }
    }
    // Upgrade must be `websocket` (§4.1 item 2).
    if (!upgrade) {
        r.err = errc::missing_upgrade;
        return r;
    }
    // Connection must list Upgrade (§4.1 item 3).
    if (!connection) {
        r.err = errc::missing_connection;
        return r;
    }
    // Sec-WebSocket-Accept must be the hash of our key (§4.1 item 4).
    if (accept_count != 1 || accept != to_string_view(make_sec_accept(key))) {
        r.err = errc::bad_accept;
        return r;
    }
    if (!protocol.empty() && protocol_count != 0) {
        // The server must choose one of the offered subprotocols (§4.1 item 6); early data is
        // echoed byte for byte.
        if (protocol_count != 1 || chosen != protocol) {
            r.err = errc::bad_protocol;
            return r;
        }
        r.protocol_echoed = true;
    }
    return r;
}

} // namespace kaminari::codec

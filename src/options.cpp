#include "kaminari/options.hpp"

#include <kaminari/error.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <utility>

namespace kaminari {

namespace {

bool is_space(char c) noexcept {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

// A character of an item and whether it was escaped: escaped spaces survive trimming.
struct marked_text {
    std::string text;
    std::vector<bool> escaped;

    void push(char c, bool esc) {
        text.push_back(c);
        escaped.push_back(esc);
    }
    bool empty() const noexcept { return text.empty(); }

    // Returns [begin, end) of `text` without unescaped spaces at either end.
    std::string trimmed(std::size_t begin, std::size_t end) const {
        while (begin < end && is_space(text[begin]) && !escaped[begin]) {
            ++begin;
        }
        while (end > begin && is_space(text[end - 1]) && !escaped[end - 1]) {
            --end;
        }
        return text.substr(begin, end - begin);
    }
};

void finish_item(marked_text& item, std::vector<option_item>& out) {
    // The first unescaped '=' separates key and value; later ones belong to the value.
    std::size_t eq = item.text.size();
    for (std::size_t i = 0; i < item.text.size(); ++i) {
        if (item.text[i] == '=' && !item.escaped[i]) {
            eq = i;
            break;
        }
    }
    option_item result;
    result.key = item.trimmed(0, eq);
    if (eq != item.text.size()) {
        result.value = item.trimmed(eq + 1, item.text.size());
    }
    item = marked_text{};
    if (result.key.empty()) {
        if (!result.value) {
            return; // an empty item such as ";;" or a trailing ';'
        }
        throw config_error(
            fmt::format("options: '={}' has no name; expected 'key=value'", *result.value));
    }
    out.push_back(std::move(result));
}

enum class side { both, client, server };

struct known_option {
    std::string_view name;
    bool flag;
    side where;
};

constexpr std::array<known_option, 36> known_options{{
    {"ws", true, side::both},
    {"host", false, side::both},
    {"path", false, side::both},
    {"mask", false, side::client},
    {"ed", false, side::client},
    {"tls", true, side::both},
    {"sni", false, side::client},
    {"alpn", false, side::client},
    {"0rtt", true, side::client},
    {"insecure", true, side::client},
    {"cert", false, side::both},
    {"key", false, side::both},
    {"servername", false, side::server},
    {"ocsp", false, side::server},
    {"loglevel", false, side::both},
    {"threads", false, side::both},
    {"handshake_timeout", false, side::both},
    {"connect_timeout", false, side::client},
    {"idle_timeout", false, side::both},
    {"max_conns", false, side::both},
    {"tfo", true, side::both},
    {"ping", false, side::both},
    {"udp", true, side::both},
    {"udp_timeout", false, side::both},
    {"pool", false, side::client},
    {"pool_idle", false, side::client},
    {"pool_max", false, side::client},
    {"fallback", false, side::server},
    {"proxy_protocol", true, side::server},
    {"metrics", false, side::both},
    {"reload", false, side::server},
    {"ca", false, side::client},
    {"pin", false, side::client},
    {"client_ca", false, side::server},
    {"mux", false, side::both},
    {"__android_vpn", true, side::client},
}};

const known_option* find_option(std::string_view name) noexcept {
    for (const auto& opt : known_options) {
        if (opt.name == name) {
            return &opt;
        }
    }
    return nullptr;
}

// The items one side reads, after checking flags and values; last occurrence wins.
class option_map {
public:
    option_map(std::string_view text, side me, std::vector<std::string>& warnings) {
        for (auto& item : split_options(text)) {
            const known_option* opt = find_option(item.key);
            if (opt == nullptr) {
                warnings.push_back(fmt::format("ignoring unknown option '{}'", item.key));
                continue;
            }
            if (opt->where != side::both && opt->where != me) {
                warnings.push_back(fmt::format("ignoring '{}': it is a {} option", item.key,
                                               opt->where == side::client ? "client" : "server"));
                continue;
            }
            if (opt->flag && item.value) {
                throw config_error(fmt::format("{}: is a flag and takes no value; expected '{}'",
                                               item.key, item.key));
            }
            if (!opt->flag && !item.value) {
                throw config_error(
                    fmt::format("{}: missing value; expected '{}=<value>'", item.key, item.key));
            }
            if (!opt->flag && item.value->empty()) {
                throw config_error(
                    fmt::format("{}: empty value; expected '{}=<value>'", item.key, item.key));
            }
            auto it = std::find_if(items_.begin(), items_.end(),
                                   [&](const option_item& o) { return o.key == item.key; });
            if (it != items_.end()) {
                *it = std::move(item);
            } else {
                items_.push_back(std::move(item));
            }
        }
    }

    bool has(std::string_view key) const noexcept { return find(key) != nullptr; }

    std::optional<std::string> value(std::string_view key) const {
        const option_item* item = find(key);
        if (item == nullptr) {
            return std::nullopt;
        }
        return item->value;
    }

    std::string require(std::string_view section, std::string_view key,
                        std::string_view form) const {
        auto v = value(key);
        if (!v) {
            throw config_error(fmt::format("{}: missing '{}={}'", section, key, form));
        }
        return *v;
    }

    // Keys given that only matter when `feature` is on: a warning each, so a typo shows.
    void warn_unused(std::initializer_list<std::string_view> keys, std::string_view feature,
                     std::vector<std::string>& warnings) const {
        for (auto key : keys) {
            if (has(key)) {
                warnings.push_back(
                    fmt::format("ignoring '{}': it has no effect without '{}'", key, feature));
            }
        }
    }

private:
    const option_item* find(std::string_view key) const noexcept {
        for (const auto& item : items_) {
            if (item.key == key) {
                return &item;
            }
        }
        return nullptr;
    }

    std::vector<option_item> items_;
};

codec::mask_mode parse_mask(std::string_view v) {
    if (v == "skip" || v == "skipped") {
        return codec::mask_mode::skip;
    }
    if (v == "fixed") {
        return codec::mask_mode::fixed;
    }
    if (v == "standard") {
        return codec::mask_mode::standard;
    }
    throw config_error(
        fmt::format("mask: unknown mode '{}'; expected 'skip', 'fixed' or 'standard'", v));
}

std::string_view mask_name(codec::mask_mode m) noexcept {
    switch (m) {
    case codec::mask_mode::skip:
        return "skip";
    case codec::mask_mode::fixed:
        return "fixed";
    case codec::mask_mode::standard:
        return "standard";
    }
    return "?";
}

// `pin=`: comma-separated base64 SHA-256 digests (44 characters, standard alphabet, one `=`).
std::vector<std::string> parse_pins(std::string_view v) {
    std::vector<std::string> pins;
    while (true) {
        const std::size_t comma = v.find(',');
        std::string_view one = v.substr(0, comma);
        while (!one.empty() && one.front() == ' ') {
            one.remove_prefix(1);
        }
        while (!one.empty() && one.back() == ' ') {
            one.remove_suffix(1);
        }
        const bool ok = one.size() == 44 && one[43] == '=' &&
                        std::all_of(one.begin(), one.end() - 1, [](char c) {
                            return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                                   (c >= '0' && c <= '9') || c == '+' || c == '/';
                        });
        if (!ok) {
            throw config_error(fmt::format(
                "pin: '{}' is not a pin; expected the base64 SHA-256 of the server's public key "
                "(44 characters, e.g. from 'kaminaris --gen-cert')",
                one));
        }
        pins.emplace_back(one);
        if (comma == std::string_view::npos) {
            return pins;
        }
        v.remove_prefix(comma + 1);
    }
}

std::chrono::milliseconds parse_seconds(std::string_view key, std::string_view v) {
    double secs = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), secs);
    if (ec != std::errc{} || end != v.data() + v.size() || !std::isfinite(secs) || secs <= 0 ||
        secs > 86400) {
        throw config_error(fmt::format(
            "{}: '{}' is not a duration; expected seconds between 0 and 86400, e.g. '{}=10'", key,
            v, key));
    }
    return std::chrono::milliseconds{static_cast<long long>(std::ceil(secs * 1000))};
}

// More concurrent connections than this would exhaust any descriptor limit long before.
constexpr std::uint64_t max_conns_limit = 10'000'000;

std::size_t parse_threads(std::string_view v) {
    unsigned n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || end != v.data() + v.size() || n == 0 || n > 256) {
        throw config_error(
            fmt::format("threads: '{}' is not a thread count; expected 1 to 256", v));
    }
    return n;
}

constexpr std::size_t max_pool_size = 256;

std::size_t parse_pool(std::string_view v) {
    unsigned n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || end != v.data() + v.size() || n > max_pool_size) {
        throw config_error(fmt::format(
            "pool: '{}' is not a connection count; expected 0 (off) to {}", v, max_pool_size));
    }
    return n;
}

std::size_t parse_max_conns(std::string_view v) {
    std::uint64_t n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || end != v.data() + v.size() || n == 0 || n > max_conns_limit) {
        throw config_error(fmt::format(
            "max_conns: '{}' is not a connection count; expected 1 to {}", v, max_conns_limit));
    }
    return static_cast<std::size_t>(n);
}

std::size_t parse_early_data(std::string_view v) {
    std::size_t n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || end != v.data() + v.size() || n > max_ws_early_data) {
        throw config_error(fmt::format(
            "ed: '{}' is not an early data size; expected 0 (off) to {} bytes, e.g. 'ed=2048'", v,
            max_ws_early_data));
    }
    return n;
}

// kaminaris `mux=`: on or off; a number as v2ray-plugin takes it (0 off, 1 to 1024 on), so a
// v2ray-plugin server's options work unchanged.
bool parse_server_mux(std::string_view v) {
    if (v == "on") {
        return true;
    }
    if (v == "off") {
        return false;
    }
    unsigned n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || end != v.data() + v.size() || n > 1024) {
        throw config_error(fmt::format(
            "mux: '{}' is not on or off; expected 'on' (default), 'off' or 0 to 1024", v));
    }
    return n != 0;
}

// kaminaric `mux=<n>`: sessions per websocket as v2ray-plugin's client takes it; `off` is 0.
std::size_t parse_client_mux(std::string_view v) {
    if (v == "off") {
        return 0;
    }
    std::size_t n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || end != v.data() + v.size() || n > max_mux_sessions) {
        throw config_error(
            fmt::format("mux: '{}' is not a session count; expected 0 (off, the default) to {}", v,
                        max_mux_sessions));
    }
    return n;
}

void check_loglevel(std::string_view v) {
    constexpr std::array<std::string_view, 4> levels{"error", "warn", "info", "debug"};
    if (std::find(levels.begin(), levels.end(), v) == levels.end()) {
        throw config_error(fmt::format(
            "loglevel: unknown level '{}'; expected 'error', 'warn', 'info' or 'debug'", v));
    }
}

common_options parse_common(const option_map& map, side me) {
    common_options c;
    if (auto v = map.value("loglevel")) {
        check_loglevel(*v);
        c.loglevel = *v;
    }
    if (auto v = map.value("threads")) {
        c.threads = parse_threads(*v);
    }
    if (auto v = map.value("handshake_timeout")) {
        c.handshake_timeout = parse_seconds("handshake_timeout", *v);
    }
    if (auto v = map.value("idle_timeout")) {
        c.idle_timeout = parse_seconds("idle_timeout", *v);
    }
    if (auto v = map.value("max_conns")) {
        c.max_conns = parse_max_conns(*v);
    }
    c.tfo = map.has("tfo");
    if (auto v = map.value("metrics")) {
        c.metrics = parse_endpoint(*v, "metrics");
    }
    if (auto v = map.value("ping")) {
        c.ping = parse_seconds("ping", *v);
    }
    c.udp = map.has("udp");
    if (auto v = map.value("udp_timeout")) {
        c.udp_timeout = parse_seconds("udp_timeout", *v);
    }
    if (me == side::client) {
        if (auto v = map.value("connect_timeout")) {
            c.connect_timeout = parse_seconds("connect_timeout", *v);
        }
    }
    return c;
}

std::optional<ws_options> parse_ws(const option_map& map, bool client,
                                   std::vector<std::string>& warnings) {
    if (!map.has("ws")) {
        map.warn_unused({"host", "path", "mask", "ping", "ed"}, "ws", warnings);
        return std::nullopt;
    }
    ws_options ws;
    ws.host = map.require("ws", "host", "<host>");
    ws.path = map.require("ws", "path", "<path>");
    if (ws.path.front() != '/') {
        throw config_error(
            fmt::format("path: '{}' must start with '/'; expected e.g. '/ws'", ws.path));
    }
    for (char c : ws.path) {
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
            throw config_error(fmt::format(
                "path: '{}' holds a space or control character; expected a URL path", ws.path));
        }
    }
    for (char c : ws.host) {
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '/') {
            throw config_error(fmt::format(
                "host: '{}' holds a space, '/' or control character; expected a host name",
                ws.host));
        }
    }
    if (client) {
        if (auto m = map.value("mask")) {
            ws.mask = parse_mask(*m);
        }
        if (auto e = map.value("ed")) {
            ws.early_data = parse_early_data(*e);
            ws.early_data_given = true;
        }
    }
    return ws;
}

std::vector<std::string> parse_alpn(std::string_view v) {
    std::vector<std::string> list;
    std::size_t start = 0;
    while (start <= v.size()) {
        std::size_t comma = v.find(',', start);
        if (comma == std::string_view::npos) {
            comma = v.size();
        }
        std::string_view proto = v.substr(start, comma - start);
        while (!proto.empty() && is_space(proto.front())) {
            proto.remove_prefix(1);
        }
        while (!proto.empty() && is_space(proto.back())) {
            proto.remove_suffix(1);
        }
        if (proto.empty() || proto.size() > 255) {
            throw config_error(fmt::format(
                "alpn: '{}' has an empty or over-long protocol; expected e.g. 'h2,http/1.1'", v));
        }
        list.emplace_back(proto);
        start = comma + 1;
    }
    return list;
}

template <class Opts>
void describe_ws(std::string& out, const Opts& o, bool client) {
    if (!o.ws) {
        return;
    }
    out += fmt::format("ws(host={}, path={}", o.ws->host, o.ws->path);
    if (client) {
        out += fmt::format(", mask={}", mask_name(o.ws->mask));
    }
    if (o.common.ping.count() != 0) {
        out += fmt::format(", ping={} s", o.common.ping.count() / 1000.0);
    }
    if (client && o.ws->early_data != 0) {
        out += fmt::format(", ed={}", o.ws->early_data);
    }
    out += ")";
    if (o.tls) {
        out += " over ";
    }
}

} // namespace

std::vector<option_item> split_options(std::string_view text) {
    std::vector<option_item> out;
    marked_text item;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '\\') {
            if (i + 1 == text.size()) {
                throw config_error("options: the string ends with a lone '\\'; expected '\\\\', "
                                   "'\\;' or '\\='");
            }
            item.push(text[++i], true);
        } else if (c == ';') {
            finish_item(item, out);
        } else {
            item.push(c, false);
        }
    }
    finish_item(item, out);
    return out;
}

// `udp` needs a transport that can tell a UDP association from a TCP connection: the
// upgrade request's header (ws, wss) or the marker inside TLS (tls).
template <class Opts>
void check_udp(Opts& o) {
    if (o.common.udp && !o.ws && !o.tls) {
        throw config_error("udp: plain tcp cannot carry UDP; expected 'ws' or 'tls' with it");
    }
    if (!o.common.udp && o.common.udp_timeout != std::chrono::seconds(60)) {
        o.warnings.emplace_back("ignoring 'udp_timeout': it applies with 'udp' only");
    }
}

// ", udp (idle 60 s)" when `udp` is on.
std::string describe_udp(const common_options& c) {
    return c.udp ? fmt::format(", udp (idle {} s)", c.udp_timeout.count() / 1000.0) : std::string();
}

client_options parse_client_options(std::string_view text) {
    client_options o;
    const option_map map(text, side::client, o.warnings);
    o.common = parse_common(map, side::client);
    o.ws = parse_ws(map, true, o.warnings);
    if (auto v = map.value("pool")) {
        o.pool.size = parse_pool(*v);
    }
    o.pool.max_size = o.pool.size;
    if (auto v = map.value("pool_max")) {
        unsigned m = 0;
        auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), m);
        if (ec != std::errc{} || end != v->data() + v->size() || m > max_pool_size) {
            throw config_error(
                fmt::format("pool_max: '{}' is not a connection count; expected at most {}", *v,
                            max_pool_size));
        }
        if (m < o.pool.size) {
            throw config_error(fmt::format("pool_max: {} is below pool={}; expected {} to {}", m,
                                           o.pool.size, o.pool.size, max_pool_size));
        }
        if (o.pool.size == 0) {
            o.warnings.emplace_back("ignoring 'pool_max': it has no effect without 'pool=<n>'");
        } else {
            o.pool.max_size = m;
        }
    }
    if (auto v = map.value("pool_idle")) {
        o.pool.max_idle = parse_seconds("pool_idle", *v);
        // The server drops a connection that sends nothing for server_request_wait.
        if (o.pool.max_idle > server_request_wait - std::chrono::seconds(10)) {
            throw config_error(fmt::format(
                "pool_idle: '{}' is too long; expected at most {} seconds (kaminaris closes a "
                "silent connection after {})",
                *v, (server_request_wait - std::chrono::seconds(10)).count(),
                server_request_wait.count()));
        }
        if (o.pool.size == 0) {
            o.warnings.emplace_back("ignoring 'pool_idle': it has no effect without 'pool=<n>'");
        }
    }
    if (auto v = map.value("mux")) {
        o.mux = parse_client_mux(*v);
        if (o.mux != 0 && !o.ws && !map.has("tls")) {
            o.warnings.emplace_back("ignoring 'mux': it takes effect only with 'ws' or 'tls'");
            o.mux = 0;
        }
        if (o.mux != 0 && o.pool.size != 0) {
            o.warnings.emplace_back(
                "ignoring 'pool': with 'mux' app connections share connections instead");
            o.pool.size = 0;
            o.pool.max_size = 0;
        }
        if (o.mux != 0 && o.ws && o.ws->early_data != 0) {
            o.warnings.emplace_back("ignoring 'ed': with 'mux' a websocket is not one app's");
            o.ws->early_data = 0;
        }
    }
    if (map.has("tls")) {
        tls_client_options tls;
        if (auto sni = map.value("sni")) {
            tls.sni = *sni;
        } else if (o.ws) {
            tls.sni = o.ws->host; // the name a browser would send for wss://host/
        } else {
            throw config_error("tls: missing 'sni=<name>'");
        }
        if (auto alpn = map.value("alpn")) {
            tls.alpn = parse_alpn(*alpn);
        }
        tls.early_data = map.has("0rtt");
        tls.insecure = map.has("insecure");
        if (auto ca = map.value("ca")) {
            tls.ca = *ca;
        }
        if (auto pins = map.value("pin")) {
            tls.pins = parse_pins(*pins);
        }
        const bool has_cert = map.has("cert");
        if (has_cert != map.has("key")) {
            throw config_error(has_cert ? "tls: 'cert=' needs 'key=<path>'"
                                        : "tls: 'key=' needs 'cert=<path>'");
        }
        if (has_cert) {
            tls.cert = *map.value("cert");
            tls.key = *map.value("key");
        }
        if (tls.insecure && (!tls.ca.empty() || !tls.pins.empty())) {
            throw config_error(fmt::format(
                "insecure: contradicts '{}'; drop 'insecure' to verify the server that way",
                tls.ca.empty() ? "pin=" : "ca="));
        }
        // Mux.Cool straight over TLS, on connections whose server selects it (client_context).
        tls.mux_alpn = o.mux != 0 && !o.ws;
        o.tls = std::move(tls);
    } else {
        map.warn_unused({"sni", "alpn", "0rtt", "insecure", "ca", "pin", "cert", "key"}, "tls",
                        o.warnings);
    }
    o.android_vpn = map.has("__android_vpn");
    check_udp(o);
    return o;
}

server_options parse_server_options(std::string_view text) {
    server_options o;
    const option_map map(text, side::server, o.warnings);
    o.common = parse_common(map, side::server);
    o.ws = parse_ws(map, false, o.warnings);
    o.proxy_protocol = map.has("proxy_protocol");
    if (auto v = map.value("fallback")) {
        if (!o.ws) {
            o.warnings.emplace_back("ignoring 'fallback': it takes effect only with 'ws'");
        } else {
            o.fallback = parse_endpoint(*v, "fallback");
        }
    }
    if (auto v = map.value("mux")) {
        o.mux = parse_server_mux(*v);
        if (!o.ws) {
            o.warnings.emplace_back("ignoring 'mux': it takes effect only with 'ws'");
        }
    }
    if (map.has("tls")) {
        tls_server_options tls;
        const bool has_cert = map.has("cert");
        const bool has_key = map.has("key");
        if (has_cert != has_key) {
            throw config_error(has_cert ? "tls: 'cert=' needs 'key=<path>'"
                                        : "tls: 'key=' needs 'cert=<path>'");
        }
        if (has_cert) {
            tls.cert = *map.value("cert");
            tls.key = *map.value("key");
            if (map.has("servername")) {
                o.warnings.emplace_back(
                    "ignoring 'servername': 'cert=' and 'key=' are given and take precedence");
            }
        } else if (auto name = map.value("servername")) {
            tls.servername = *name;
        } else {
            throw config_error("tls: missing 'cert=<path>' and 'key=<path>'; expected those or "
                               "'servername=<name>'");
        }
        if (auto ocsp = map.value("ocsp")) {
            tls.ocsp = *ocsp;
        }
        if (auto v = map.value("client_ca")) {
            tls.client_ca = *v;
        }
        if (auto v = map.value("reload")) {
            tls.reload = parse_seconds("reload", *v);
            if (tls.cert.empty() && tls.reload.count() != 0) {
                o.warnings.emplace_back(
                    "ignoring 'reload': a servername= certificate has no files to watch");
                tls.reload = std::chrono::milliseconds(0);
            }
        }
        tls.mux_alpn = !o.ws; // kaminaric's tls;mux=<n>, served whatever 'mux=' says
        o.tls = std::move(tls);
    } else {
        map.warn_unused({"cert", "key", "servername", "ocsp", "reload", "client_ca"}, "tls",
                        o.warnings);
    }
    check_udp(o);
    return o;
}

bool apply_plugin_defaults(client_options& o) {
    if (!o.ws || o.ws->early_data_given || o.mux != 0) {
        return false;
    }
    o.ws->early_data = max_ws_early_data;
    return true;
}

std::string describe(const client_options& o) {
    std::string out;
    describe_ws(out, o, true);
    if (o.tls) {
        out += fmt::format("tls(sni={}", o.tls->sni);
        if (!o.tls->alpn.empty()) {
            out += fmt::format(", alpn={}", fmt::join(o.tls->alpn, ","));
        }
        if (o.tls->early_data) {
            out += ", 0rtt";
        }
        if (o.tls->insecure) {
            out += ", insecure";
        }
        out += ")";
    }
    if (out.empty()) {
        out = "tcp";
    }
    if (o.mux != 0) {
        out += fmt::format(", mux {}", o.mux);
    }
    if (o.pool.size != 0) {
        out += fmt::format(", pool of {}", o.pool.size);
        if (o.pool.max_size > o.pool.size) {
            out += fmt::format(", up to {} after a burst", o.pool.max_size);
        }
        out += fmt::format(" (replaced after {} s unused)", o.pool.max_idle.count() / 1000.0);
    }
    if (o.common.tfo) {
        out += ", tfo";
    }
    out += describe_udp(o.common);
    if (o.android_vpn) {
        out += ", android vpn (sockets protected through protect_path)";
    }
    return out;
}

std::string describe(const server_options& o) {
    std::string out;
    describe_ws(out, o, false);
    if (o.tls) {
        if (!o.tls->cert.empty()) {
            out += fmt::format("tls(cert={}, key={}", o.tls->cert, o.tls->key);
        } else {
            out += fmt::format("tls(servername={} self-signed", o.tls->servername);
        }
        if (!o.tls->ocsp.empty()) {
            out += fmt::format(", ocsp={}", o.tls->ocsp);
        }
        out += ")";
    }
    if (out.empty()) {
        out = "tcp";
    }
    if (o.fallback) {
        out += fmt::format(", fallback to {}", o.fallback->to_string());
    }
    if (o.proxy_protocol) {
        out += ", behind a PROXY protocol balancer";
    }
    out += describe_udp(o.common);
    if (o.ws && !o.mux) {
        out += ", mux off";
    }
    return out;
}

} // namespace kaminari

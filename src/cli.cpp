#include "kaminari/cli.hpp"

#include <kaminari/error.hpp>

#include <fmt/format.h>

#include <charconv>
#include <cstdlib>
#include <vector>

namespace kaminari {

namespace {

std::uint16_t parse_port(std::string_view text, std::string_view what) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value > 65535) {
        throw config_error(
            fmt::format("{}: '{}' is not a port; expected a number from 0 to 65535", what, text));
    }
    return static_cast<std::uint16_t>(value);
}

std::string check_host(std::string_view host, std::string_view what, std::string_view whole) {
    if (host.empty()) {
        throw config_error(
            fmt::format("{}: '{}' has no host; expected '<host>:<port>'", what, whole));
    }
    for (char c : host) {
        if (static_cast<unsigned char>(c) <= 0x20 || c == '/' || c == '[' || c == ']') {
            throw config_error(fmt::format(
                "{}: '{}' is not a host; expected a name, IPv4 or [IPv6] address", what, whole));
        }
    }
    return std::string(host);
}

} // namespace

std::string endpoint::to_string() const {
    if (host.find(':') != std::string::npos) {
        return fmt::format("[{}]:{}", host, port);
    }
    return fmt::format("{}:{}", host, port);
}

endpoint parse_endpoint(std::string_view text, std::string_view what) {
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            throw config_error(
                fmt::format("{}: '{}' is not an address; expected '[<ipv6>]:<port>'", what, text));
        }
        const std::string_view host = text.substr(1, close - 1);
        if (host.empty() || host.find(':') == std::string_view::npos) {
            throw config_error(
                fmt::format("{}: '{}' has no IPv6 address in brackets; expected '[<ipv6>]:<port>'",
                            what, text));
        }
        return endpoint{check_host(host, what, text), parse_port(text.substr(close + 2), what)};
    }
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
        throw config_error(
            fmt::format("{}: '{}' has no port; expected '<host>:<port>'", what, text));
    }
    const std::string_view host = text.substr(0, colon);
    if (host.find(':') != std::string_view::npos) {
        throw config_error(fmt::format(
            "{}: '{}' looks like an IPv6 address; expected '[<ipv6>]:<port>'", what, text));
    }
    return endpoint{check_host(host, what, text), parse_port(text.substr(colon + 1), what)};
}

std::optional<std::string> real_env(const char* name) {
    const char* v = std::getenv(name);
    if (v == nullptr) {
        return std::nullopt;
    }
    return std::string(v);
}

invocation parse_invocation(std::span<const std::string_view> args, role who,
                            const env_lookup& env) {
    invocation inv;
    if (!args.empty() && args[0] == "--gen-cert") {
        if (who != role::server) {
            throw config_error("--gen-cert: only kaminaris makes certificates");
        }
        if (args.size() != 3 || args[1].empty() || args[2].empty()) {
            throw config_error("--gen-cert: expected '--gen-cert <name> <dir>'");
        }
        inv.what = invocation::action::gen_cert;
        inv.gen_name = std::string(args[1]);
        inv.gen_dir = std::string(args[2]);
        return inv;
    }
    const bool have_env = env("SS_REMOTE_HOST") && env("SS_REMOTE_PORT") && env("SS_LOCAL_HOST") &&
                          env("SS_LOCAL_PORT");
    std::vector<std::string_view> positional;
    bool options_only = false;
    for (std::string_view arg : args) {
        if (!options_only && (arg == "-h" || arg == "--help")) {
            inv.what = invocation::action::help;
            return inv;
        }
        if (!options_only && arg == "--version") {
            inv.what = invocation::action::version;
            return inv;
        }
        if (!options_only && arg == "-V") {
            // shadowsocks-android passes -V (VPN mode) to plugins; only then is it not --version.
            if (have_env) {
                inv.android_vpn = true;
                continue;
            }
            inv.what = invocation::action::version;
            return inv;
        }
        if (!options_only && have_env && arg == "--fast-open") {
            inv.fast_open = true; // shadowsocks-android's older plugin API: TCP Fast Open
            continue;
        }
        if (!options_only && arg == "--") {
            options_only = true;
            continue;
        }
        if (!options_only && arg.size() > 1 && arg.front() == '-') {
            throw config_error(fmt::format("unknown flag '{}'; expected --help or --version", arg));
        }
        positional.push_back(arg);
    }

    if (positional.empty() && have_env) {
        const auto host = [&](const char* name) {
            std::string h = *env(name);
            // Tolerate a bracketed IPv6 literal; SIP003 hosts pass the bare form.
            if (h.size() >= 2 && h.front() == '[' && h.back() == ']') {
                h = h.substr(1, h.size() - 2);
            }
            return check_host(h, name, h);
        };
        endpoint ss_local{host("SS_LOCAL_HOST"),
                          parse_port(*env("SS_LOCAL_PORT"), "SS_LOCAL_PORT")};
        endpoint ss_remote{host("SS_REMOTE_HOST"),
                           parse_port(*env("SS_REMOTE_PORT"), "SS_REMOTE_PORT")};
        if (who == role::client) {
            inv.local = std::move(ss_local);
            inv.remote = std::move(ss_remote);
        } else {
            inv.local = std::move(ss_remote);
            inv.remote = std::move(ss_local);
        }
        inv.options = env("SS_PLUGIN_OPTIONS").value_or("");
        inv.sip003 = true;
        return inv;
    }

    if (positional.size() < 2 || positional.size() > 3) {
        throw config_error(
            positional.empty()
                ? "missing arguments; expected '<local> <remote> [<options>]' or SIP003 SS_* "
                  "environment variables"
                : fmt::format("expected 2 or 3 arguments, got {}", positional.size()));
    }
    inv.local = parse_endpoint(positional[0], "local");
    inv.remote = parse_endpoint(positional[1], "remote");
    if (positional.size() == 3) {
        inv.options = std::string(positional[2]);
    }
    return inv;
}

std::string usage_line(role who) {
    return fmt::format("usage: {} <local> <remote> [<options>]   (see --help)",
                       who == role::client ? "kaminaric" : "kaminaris");
}

std::string help_text(role who) {
    const bool client = who == role::client;
    std::string text = fmt::format(
        "{0} {1} - websocket/TLS tunnel {2}\n"
        "\n"
        "usage: {0} <local> <remote> [<options>]\n"
        "       {0} --help | --version\n{6}"
        "\n"
        "{3}\n"
        "\n"
        "addresses: 1.2.3.4:80, [::1]:80 or name:80\n"
        "options:   one string, items separated by ';', e.g. '{4}'\n"
        "           write '\\;' '\\=' '\\\\' for a literal ';' '=' '\\' inside a value\n"
        "\n"
        "  ws                      enable websocket\n"
        "  host=<host>             HTTP Host {5} (required with ws)\n"
        "  path=<path>             request path {5} (required with ws)\n",
        client ? "kaminaric" : "kaminaris", KAMINARI_VERSION, client ? "client" : "server",
        client ? "Accepts plain TCP on <local>; sends tcp, ws, tls or wss to <remote>."
               : "Accepts tcp, ws, tls or wss on <local>; sends plain TCP to <remote>.",
        client ? "ws;host=example.com;path=/ws;tls;sni=example.com"
               : "ws;host=example.com;path=/ws;tls;cert=cert.pem;key=key.pem",
        client ? "to send" : "to accept",
        client ? ""
               : "       kaminaris --gen-cert <name> <dir>   write <dir>/<name>.pem and .key (a\n"
                 "               self-signed ECDSA P-256 certificate) and print its pin=\n");
    if (client) {
        text += "  mask=skip|fixed|standard  frame masking: zero key (default), one key per\n"
                "                          connection, or a new key per frame\n"
                "  ed=<n>                  websocket early data: up to n (1..2048) of the app's\n"
                "                          first bytes ride in the upgrade request (0: off, the\n"
                "                          default; 2048 as a shadowsocks plugin without mux)\n"
                "  tls                     enable TLS\n"
                "  sni=<name>              server name sent and verified (default: ws host)\n"
                "  alpn=<a,b>              ALPN protocols offered, e.g. http/1.1\n"
                "  0rtt                    send the first bytes as TLS 1.3 early data\n"
                "  insecure                do not verify the server certificate\n"
                "  ca=<path>               trust exactly the CAs in this PEM bundle\n"
                "  pin=<b64>[,<b64>]       the server's key must have one of these pins\n"
                "                          (kaminaris --gen-cert prints its pin)\n"
                "  cert=<path>             a client certificate, for servers with client_ca\n"
                "  key=<path>              its private key\n"
                "  connect_timeout=<s>     connect deadline in seconds (default 10)\n"
                "  pool=<n>                keep n connections to the server open and ready\n"
                "                          (TCP and TLS done): an app starts on one\n"
                "  pool_idle=<s>           replace a ready connection unused this long\n"
                "                          (default 30, at most 110)\n"
                "  pool_max=<m>            after a burst of app connections (a page load),\n"
                "                          keep as many ready as it took, up to m, until\n"
                "                          none has reached that for pool_idle (n and m\n"
                "                          are spread over the threads, rounded up)\n"
                "  mux=<n>                 (ws, tls) up to n app connections at once on one\n"
                "                          websocket or TLS connection as Mux.Cool sessions\n"
                "                          (2n, at most 96, in a burst), as v2ray-plugin\n"
                "                          (default 0: off; at most 1024)\n"
                "  __android_vpn           shadowsocks-android VPN mode (or -V): every socket\n"
                "                          to the server is protected through ./protect_path\n"
                "                          before its connect\n";
    } else {
        text += "  tls                     enable TLS\n"
                "  cert=<path>             certificate chain, PEM or DER\n"
                "  key=<path>              private key, PEM or DER\n"
                "  servername=<name>       instead of cert/key: a self-signed certificate\n"
                "  ocsp=<path>             DER OCSP response to staple\n"
                "  client_ca=<path>        require a client certificate from these CAs (mTLS)\n"
                "  reload=<s>              reread cert, key and ocsp when they change, checked\n"
                "                          every s seconds (SIGHUP always rereads them)\n"
                "  fallback=<host:port>    ws/wss: a connection that is not a valid upgrade goes\n"
                "                          to this web server, with the bytes it sent\n"
                "  proxy_protocol          every connection starts with a PROXY protocol v1/v2\n"
                "                          header (HAProxy send-proxy, nginx proxy_protocol);\n"
                "                          one without is refused\n"
                "  mux=on|off              ws/wss: serve v2ray's Mux.Cool (v2ray-plugin clients'\n"
                "                          default), recognised by its first bytes (default on)\n";
    }
    text += "  handshake_timeout=<s>   TLS + websocket handshake deadline (default 10)\n"
            "  idle_timeout=<s>        close a connection that moves no byte either way for\n"
            "                          this long (default: never)\n"
            "  max_conns=<n>           connections open at once; at the cap a new one is\n"
            "                          accepted and closed at once (default: no cap)\n"
            "  ping=<s>                ws/wss: ping after s seconds without traffic; close\n"
            "                          when nothing at all comes back within s more\n"
            "  tfo                     TCP Fast Open: the client's first bytes ride in the\n"
            "                          SYN (needs net.ipv4.tcp_fastopen=3 on both hosts)\n"
            "  metrics=<ip:port>       serve Prometheus metrics at http://ip:port/metrics\n"
            "  udp                     ws/wss/tls: also carry UDP (SIP003u), one connection\n"
            "                          per client source address\n"
            "  udp_timeout=<s>         end a UDP association idle this long (default 60)\n"
            "  threads=<n>             worker threads (default: one per core)\n"
            "  loglevel=<level>        error, warn, info (default) or debug\n"
            "\n"
            "SIP003: with no addresses on the command line and SS_REMOTE_HOST, SS_REMOTE_PORT,\n"
            "SS_LOCAL_HOST, SS_LOCAL_PORT set, those and SS_PLUGIN_OPTIONS are used; then -V\n"
            "(shadowsocks-android VPN mode, as __android_vpn) and --fast-open (as tfo) are\n"
            "accepted too.\n"
            "\n"
            "signals:     SIGINT, SIGTERM stop (exit 0); SIGHUP is logged and ignored\n"
            "exit status: 0 stopped by SIGINT/SIGTERM, 1 runtime failure (bind, files),\n"
            "             2 bad arguments or options\n";
    return text;
}

} // namespace kaminari

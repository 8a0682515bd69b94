#pragma once

// The SIP003 options string: `ws;host=example.com;path=/ws;tls;sni=example.com`.
// Items are separated by `;`; inside an item `\;`, `\=` and `\\` stand for `;`, `=` and `\`.
// Spaces around items, keys and values are trimmed. Keys match exactly; a repeated key is
// allowed and the last one wins. Parsing is pure: no files are opened here.

#include <kaminari/cli.hpp>
#include <kaminari/codec/mask.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kaminari {

/// One item of the options string after unescaping: a flag (no `=`) or a key=value pair.
struct option_item {
    std::string key;
    std::optional<std::string> value; ///< empty optional for a flag
};

/// Splits `text` into items, undoing `\;` `\=` `\\`. Throws config_error for an empty key
/// (`=x`) or a dangling backslash. Empty items (`;;`) are skipped.
std::vector<option_item> split_options(std::string_view text);

/// Most bytes `ed=<n>` may put into an upgrade request (Xray's usual `?ed=2048`).
inline constexpr std::size_t max_ws_early_data = 2048;

/// Websocket settings (`ws`, `host=`, `path=`, `mask=`, `ed=`).
struct ws_options {
    std::string host;
    std::string path;
    codec::mask_mode mask = codec::mask_mode::skip;
    /// Client, `ed=<n>`: up to n of the app's first bytes ride in the upgrade request
    /// (`Sec-WebSocket-Protocol`, Xray's early data); 0 = off (the default, except as a
    /// shadowsocks plugin: apply_plugin_defaults()).
    std::size_t early_data = 0;
    bool early_data_given = false; ///< `ed=` was among the options
};

/// Client TLS settings (`tls`, `sni=`, `alpn=`, `0rtt`, `insecure`).
struct tls_client_options {
    std::string sni;
    std::vector<std::string> alpn;
    bool early_data = false;
    bool insecure = false;
    /// `ca=<path>`: trust exactly the CAs in this PEM bundle (not the system's store).
    std::string ca;
    /// `pin=<base64 sha256 of the SubjectPublicKeyInfo>[,...]`: the server's leaf key must be
    /// one of these; without `ca` the chain need not verify (the name still must match).
    std::vector<std::string> pins;
    /// `cert=<path>`, `key=<path>`: a client certificate, for servers that ask (`client_ca`).
    std::string cert;
    std::string key;
    /// `tls;mux=<n>` (no ws): the mux links' handshakes offer the ALPN protocol
    /// codec::mux::tls_alpn after `alpn` (or http/1.1); other connections (UDP associations)
    /// offer `alpn` alone.
    bool mux_alpn = false;
};

/// Server TLS settings (`tls`, `cert=`+`key=` or `servername=`, `ocsp=`).
struct tls_server_options {
    std::string cert;
    std::string key;
    std::string servername;
    std::string ocsp;
    /// `reload=<seconds>`: check the files this often and reload them when they change (as
    /// SIGHUP does); 0 = only on SIGHUP.
    std::chrono::milliseconds reload{0};
    /// `client_ca=<path>`: require a client certificate signed by a CA in this PEM bundle.
    std::string client_ca;
    /// tls without ws: select the ALPN protocol codec::mux::tls_alpn when a client offers it
    /// (kaminaric `tls;mux=<n>`), and serve that connection as Mux.Cool.
    bool mux_alpn = false;
};

/// Settings shared by both programs.
struct common_options {
    std::string loglevel = "info";                       ///< `loglevel=`: error, warn, info, debug
    std::chrono::milliseconds handshake_timeout{10'000}; ///< `handshake_timeout=<seconds>`
    std::chrono::milliseconds connect_timeout{10'000};   ///< `connect_timeout=<seconds>`
    std::size_t threads = 0; ///< `threads=<n>`: worker threads; 0 = one per core
    /// `idle_timeout=<seconds>`: a tunnel connection that moves no byte in either direction
    /// for this long is closed; 0 = never (the default).
    std::chrono::milliseconds idle_timeout{0};
    /// `max_conns=<n>`: connections open at once, per process; at the cap a new connection is
    /// accepted and closed at once. 0 = no cap (the default).
    std::size_t max_conns = 0;
    /// `tfo`: TCP Fast Open on the listening socket (both) and towards the server (kaminaric):
    /// the client's first bytes ride in the SYN once the kernel holds a cookie for the server.
    bool tfo = false;
    /// `ping=<seconds>` (ws and wss): a connection with no traffic either way for this long
    /// sends a ping; one that then receives nothing at all for as long again is closed. 0: off.
    std::chrono::milliseconds ping{0};
    /// `metrics=<ip:port>`: serve Prometheus metrics at http://ip:port/metrics. Empty: off.
    std::optional<endpoint> metrics;
    /// `udp` (ws, wss, tls): also carry UDP (SIP003u). kaminaric listens for UDP on its local
    /// address, one tunnel connection per client source address; kaminaris sends each
    /// association's datagrams to its remote from a UDP socket of its own.
    bool udp = false;
    /// `udp_timeout=<seconds>`: a UDP association with no datagram either way for this long
    /// ends (its socket and connection close).
    std::chrono::milliseconds udp_timeout{60'000};
};

/// `pool=<n>`: warm connections kept open to the server (see net/pool.hpp).
struct pool_options {
    std::size_t size = 0; ///< 0: no pool
    /// `pool_max=<m>`: after a burst of more than `size` app connections, keep up to m ready
    /// (net/pool.hpp); `size` when not given, a pool that does not grow.
    std::size_t max_size = 0;
    /// `pool_idle=<seconds>`: a warm connection unused this long is replaced. Under the
    /// server's wait for a request on a silent connection (server_request_wait).
    std::chrono::milliseconds max_idle{30'000};
};

/// How long kaminaris waits for the first byte of a websocket upgrade request on a connection
/// that has sent nothing yet (a client's warm connection); the handshake deadline starts at
/// that byte.
inline constexpr std::chrono::seconds server_request_wait{120};

/// Most sessions `mux=<n>` puts on one websocket (v2ray's limit for its `mux`).
inline constexpr std::size_t max_mux_sessions = 1024;

struct client_options {
    std::optional<ws_options> ws;
    std::optional<tls_client_options> tls;
    pool_options pool;
    /// `mux=<n>` (ws, wss, tls): carry up to n app connections at once on one websocket as
    /// Mux.Cool sessions, as v2ray-plugin's client does (net/mux_client.hpp); with tls and no
    /// ws, on one TLS connection that settled on ALPN codec::mux::tls_alpn. 0: off (the
    /// default), one connection to the server per app connection.
    std::size_t mux = 0;
    common_options common;
    /// `__android_vpn` (shadowsocks-android appends it in VPN mode; `-V` on the command line
    /// is the older form): every socket to the server is protected through `protect_path`
    /// before its connect (net/protect.hpp).
    bool android_vpn = false;
    std::vector<std::string> warnings; ///< one line per ignored (unknown or server-side) item
};

struct server_options {
    std::optional<ws_options> ws;
    std::optional<tls_server_options> tls;
    /// `fallback=<host:port>` (ws and wss): where a connection goes, with the bytes it sent,
    /// when it is not a valid upgrade for `host` and `path` (a prober then sees that web
    /// server). Empty: kaminaris answers 404/400 itself.
    std::optional<endpoint> fallback;
    /// `proxy_protocol`: every connection starts with a PROXY protocol header (v1 or v2, from a
    /// load balancer: HAProxy `send-proxy`, nginx `proxy_protocol on`); the client address it
    /// carries is logged; a connection without a valid one is refused. Off: never guessed.
    bool proxy_protocol = false;
    /// `mux=on|off` (ws and wss): recognise v2ray's Mux.Cool from a connection's first bytes
    /// and serve its sessions (net/mux_server.hpp). On by default; `off` (or `0`) relays every
    /// connection as a plain stream.
    bool mux = true;
    common_options common;
    std::vector<std::string> warnings; ///< one line per ignored (unknown or client-side) item
};

/// Parses and validates the client's options. Throws config_error naming the option.
client_options parse_client_options(std::string_view text);

/// What changes when kaminaric runs as a shadowsocks (SIP003) plugin: its app is then the
/// shadowsocks client, which always speaks first (its salt and request), so websocket early
/// data can never make it wait; `ws` without `ed=` and without `mux` gets
/// ed=max_ws_early_data.
/// Returns whether it changed anything.
bool apply_plugin_defaults(client_options& opts);

/// Parses and validates the server's options. Throws config_error naming the option.
server_options parse_server_options(std::string_view text);

/// One line describing the transport, e.g. `ws(host=a, path=/ws, mask=skip) over tls(sni=a)`.
std::string describe(const client_options& opts);
std::string describe(const server_options& opts);

} // namespace kaminari

#pragma once

// The command line and the SIP003 environment: where to listen, where to connect, and the
// options string. Pure: the environment lookup is passed in, so tests need no real env.

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace kaminari {

/// A host (name, IPv4 or IPv6 literal without brackets) and a port.
struct endpoint {
    std::string host;
    std::uint16_t port = 0;

    /// `1.2.3.4:80`, `[::1]:80` or `name:80`.
    std::string to_string() const;
    friend bool operator==(const endpoint&, const endpoint&) = default;
};

/// Parses `1.2.3.4:80`, `[::1]:80` or `name:80`. `what` names the argument in errors
/// (`local`, `remote`). Throws config_error.
endpoint parse_endpoint(std::string_view text, std::string_view what);

/// Which program is parsing: they differ only in how SIP003 roles map to local/remote.
enum class role { client, server };

struct invocation {
    enum class action { run, help, version, gen_cert };
    action what = action::run;
    /// `kaminaris --gen-cert <name> <dir>`: the certificate's name and where its files go.
    std::string gen_name;
    std::string gen_dir;
    endpoint local;  ///< where this process listens
    endpoint remote; ///< where it connects for every accepted connection
    std::string options;
    bool sip003 = false; ///< addresses and options came from SS_* variables
    /// `-V` with the SIP003 environment: shadowsocks-android's VPN mode (older plugin API; the
    /// newer one puts `__android_vpn` in the options instead).
    bool android_vpn = false;
    /// `--fast-open` with the SIP003 environment: shadowsocks-android's older way to ask for
    /// TCP Fast Open; the same as the `tfo` option.
    bool fast_open = false;
};

/// Looks up an environment variable; std::nullopt when unset.
using env_lookup = std::function<std::optional<std::string>(const char*)>;

/// The real environment.
std::optional<std::string> real_env(const char* name);

/// Reads `args` (without the program name) and, when no addresses are given on the command
/// line and SS_REMOTE_HOST, SS_REMOTE_PORT, SS_LOCAL_HOST and SS_LOCAL_PORT are all set, the
/// SIP003 environment. The server swaps the SIP003 roles: it listens on SS_REMOTE_* and
/// forwards to SS_LOCAL_*. With that environment, `-V` (VPN mode, not --version then) and
/// `--fast-open` are accepted anywhere among `args`, as shadowsocks-android passes them.
/// Throws config_error on bad input.
invocation parse_invocation(std::span<const std::string_view> args, role who,
                            const env_lookup& env);

/// One usage line: `usage: kaminaric <local> <remote> [<options>]`.
std::string usage_line(role who);

/// The full --help text.
std::string help_text(role who);

} // namespace kaminari

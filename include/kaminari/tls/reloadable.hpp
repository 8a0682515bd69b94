#pragma once

// kaminaris's server TLS context, replaceable while serving: on SIGHUP (and with `reload=<s>`
// when the files change) the certificate, key and OCSP response are read again and new
// handshakes use them; established connections keep theirs.

#include <kaminari/options.hpp>
#include <kaminari/tls/context.hpp>
#include <kaminari/tls/engine.hpp>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace kaminari::tls {

/// Thread safety: make_engine() from any thread; reload() and files_changed() from one.
class reloadable_server_context {
public:
    /// Builds the first context (throws as server_context does).
    explicit reloadable_server_context(const tls_server_options& opts);

    reloadable_server_context(const reloadable_server_context&) = delete;
    reloadable_server_context& operator=(const reloadable_server_context&) = delete;

    /// A server engine from the current context.
    engine make_engine() const;

    /// Whether there are files to reload (`cert=`/`key=`; a `servername=` certificate is made
    /// at start and has none).
    bool from_files() const noexcept { return !opts_.cert.empty(); }

    /// Reads the files again and, when they make a working context (the key matches the
    /// certificate), serves new handshakes from it. On failure the current context stays and
    /// the error (naming the file) is returned. A context replaced stays allocated until exit
    /// (a handshake that began on it may still use it; a reload is rare and costs a few KiB).
    std::optional<std::string> reload();

    /// Whether any of the files has changed (modification time, size or inode) since the last
    /// successful load or the last call that said so.
    bool files_changed();

    /// The current certificate's serial number, in hex, for the log.
    std::string serial() const;

private:
    struct stamp {
        bool exists = false;
        long long mtime_ns = 0;
        long long size = 0;
        unsigned long long inode = 0;
        bool operator==(const stamp&) const = default;
    };
    std::vector<stamp> stamps() const;

    tls_server_options opts_;
    mutable std::mutex mutex_;
    std::unique_ptr<server_context> current_;
    std::vector<std::unique_ptr<server_context>> retired_;
    std::vector<stamp> seen_;
};

} // namespace kaminari::tls

#include "kaminari/app.hpp"

#include <kaminari/error.hpp>
#include <kaminari/log.hpp>
#include <kaminari/net/listener.hpp>
#include <kaminari/net/metrics.hpp>
#include <kaminari/net/protect.hpp>
#include <kaminari/net/tunnel.hpp>
#include <kaminari/net/udp_client.hpp>
#include <kaminari/options.hpp>
#include <kaminari/tls/context.hpp>
#include <kaminari/tls/self_signed.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>
#include <openssl/pem.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fcntl.h>
#include <filesystem>
#include <string_view>
#include <sys/prctl.h>
#include <unistd.h>
#include <vector>

namespace kaminari {

namespace {

using tcp = asio::ip::tcp;

// The parent as the process started: a SIP003 host that dies before we look must not go
// unnoticed (getppid() would already name the reaper).
pid_t parent_at_start = 0;

const char* program_name(role who) noexcept {
    return who == role::client ? "kaminaric" : "kaminaris";
}

// A SIP003 plugin must not outlive its host, even one killed without a chance to signal us.
asio::awaitable<void> watch_parent(pid_t parent, net::runtime& rt) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    for (;;) {
        timer.expires_after(std::chrono::seconds(1));
        auto [ec] = co_await timer.async_wait(net::use_tuple);
        if (ec) {
            co_return;
        }
        if (getppid() != parent) {
            log::info("parent process {} is gone; stopping", parent);
            rt.stop();
            co_return;
        }
    }
}

// SIGHUP (`systemctl reload`, a closed terminal) must never stop the process: each one is
// logged, saying what it does, and serving goes on.
asio::awaitable<void> log_hangups(asio::signal_set& hangups, std::string_view what) {
    for (;;) {
        auto [ec, sig] = co_await hangups.async_wait(net::use_tuple);
        if (ec) {
            co_return;
        }
        log::info("received SIGHUP; {}", what);
    }
}

// kaminaris with cert= and key=: reads them (and ocsp=) again; new handshakes use them. A file
// that is missing, unreadable or does not match keeps the old certificate in service.
void reload_certificate(tls::reloadable_server_context& tls, std::string_view why) {
    if (auto err = tls.reload()) {
        log::error("{}: keeping the certificate in service (serial {}): {}", why, tls.serial(),
                   *err);
        return;
    }
    log::info("{}: certificate reloaded (serial {}); new handshakes use it", why, tls.serial());
}

asio::awaitable<void> reload_on_hangup(asio::signal_set& hangups,
                                       tls::reloadable_server_context& tls) {
    for (;;) {
        auto [ec, sig] = co_await hangups.async_wait(net::use_tuple);
        if (ec) {
            co_return;
        }
        reload_certificate(tls, "SIGHUP");
    }
}

// `reload=<s>`: certbot's deploy hook is not always set up, so the files are watched too.
asio::awaitable<void> watch_certificate(tls::reloadable_server_context& tls,
                                        std::chrono::milliseconds every) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    for (;;) {
        timer.expires_after(every);
        auto [ec] = co_await timer.async_wait(net::use_tuple);
        if (ec) {
            co_return;
        }
        if (tls.files_changed()) {
            reload_certificate(tls, "certificate files changed");
        }
    }
}

template <class Config>
constexpr role who_of(const Config&) noexcept {
    return std::is_same_v<Config, net::client_config> ? role::client : role::server;
}

// The transport in one word, for the metrics' labels.
template <class Options>
std::string transport_kind(const Options& o) {
    return o.ws ? (o.tls ? "wss" : "ws") : (o.tls ? "tls" : "tcp");
}

struct hangup_ignored_at_exit {
    hangup_ignored_at_exit() = default;
    hangup_ignored_at_exit(const hangup_ignored_at_exit&) = delete;
    hangup_ignored_at_exit& operator=(const hangup_ignored_at_exit&) = delete;
    ~hangup_ignored_at_exit() { std::signal(SIGHUP, SIG_IGN); }
};

template <class Config>
int serve(const invocation& inv, Config& cfg, const std::string& transport) {
    if (inv.sip003) {
        // Before anything is bound: a host that dies from here on is noticed.
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent_at_start) {
            log::info("parent process {} is gone; not starting", parent_at_start);
            return 0;
        }
    }
    const auto nofile = net::raise_open_file_limit();
    net::runtime rt(cfg.opts.common.threads);
    // Before the port is bound: from the moment a host can see us listening, SIGTERM stops us
    // cleanly (exit 0) instead of killing us (it is handled once run() starts).
    asio::signal_set signals(rt.main_context(), SIGINT, SIGTERM);
    signals.async_wait([&rt](const error_code& ec, int sig) {
        if (!ec) {
            log::info("received {}; stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
            rt.stop();
        }
    });
    // Destroying a signal_set puts back the default action, which for SIGHUP is to die: this
    // guard, destroyed right after `hangups`, ignores it again for the rest of the shutdown.
    const hangup_ignored_at_exit keep_ignoring;
    asio::signal_set hangups(rt.main_context(), SIGHUP);
    constexpr std::string_view on_hangup =
        std::is_same_v<Config, net::client_config>
            ? "nothing to reload; going on"
            : "no certificate files to reload (tcp, ws, or servername=); going on";
    if constexpr (std::is_same_v<Config, net::server_config>) {
        if (cfg.tls && cfg.tls->from_files()) {
            asio::co_spawn(rt.main_context(), reload_on_hangup(hangups, cfg.tls.value()),
                           asio::detached);
            if (cfg.opts.tls->reload.count() != 0) {
                asio::co_spawn(rt.main_context(),
                               watch_certificate(cfg.tls.value(), cfg.opts.tls->reload),
                               asio::detached);
            }
        } else {
            asio::co_spawn(rt.main_context(), log_hangups(hangups, on_hangup), asio::detached);
        }
    } else {
        asio::co_spawn(rt.main_context(), log_hangups(hangups, on_hangup), asio::detached);
    }
    // `udp`: kaminaric also takes UDP on its local address (destroyed before the runtime),
    // bound before TCP listens: whoever sees the TCP port open can send UDP to it.
    std::shared_ptr<net::udp_client> udp;
    if constexpr (std::is_same_v<Config, net::client_config>) {
        if (cfg.opts.common.udp) {
            udp = net::start_udp_client(rt.main_context(), inv.local, cfg);
        }
    }
    auto listeners = net::bind_listeners(rt.main_context(), inv.local, cfg.opts.common.tfo);

    log::info("listen: {}", inv.local.to_string());
    log::info("remote: {}", inv.remote.to_string());
    log::info("transport: {}", transport);
    log::debug("workers: {}, open file limit: {}", rt.size(), nofile);

    // Declared after the runtime: destroyed before it, while its io_contexts still exist.
    std::shared_ptr<net::client_pools> pools;
    if constexpr (std::is_same_v<Config, net::client_config>) {
        pools = net::start_client_pools(cfg, rt);
    }
    const net::connection_handler handler = [&cfg, p = pools.get()](tcp::socket s,
                                                                    std::uint64_t id) {
        if constexpr (std::is_same_v<Config, net::client_config>) {
            return net::client_connection(std::move(s), id, cfg, p);
        } else {
            (void)p;
            return net::server_connection(std::move(s), id, cfg);
        }
    };
    // An accept loop only ends by an exception it could not survive: say so and stop, rather
    // than keep running without serving.
    std::atomic<int> status = 0;
    const auto on_loop_end = [&rt, &status](std::exception_ptr e) {
        if (!e) {
            return;
        }
        log::error("accept loop failed: {}; stopping", log::what(e));
        status = 1;
        rt.stop();
    };
    net::serve_listeners(std::move(listeners), rt, handler, cfg.opts.common.max_conns, on_loop_end);
    if (cfg.opts.common.metrics) {
        try {
            net::metrics::start_server(rt, *cfg.opts.common.metrics, program_name(who_of(cfg)),
                                       transport_kind(cfg.opts));
        } catch (const std::exception& e) {
            log::error("metrics: cannot listen on {}: {}", cfg.opts.common.metrics->to_string(),
                       e.what());
            return 1;
        }
    }

    if (inv.sip003) {
        asio::co_spawn(rt.main_context(), watch_parent(parent_at_start, rt), asio::detached);
    }
    rt.run();
    if (udp) {
        net::stop_udp_client(*udp);
    }
    if (pools) {
        net::stop_client_pools(*pools);
    }
    return status.load();
}

// `kaminaris --gen-cert <name> <dir>`: a key and self-signed certificate that stay across
// restarts (servername= makes a new key at each start), and the pin= a client can use. The
// directory is made if missing; existing files are never overwritten; the key is 0600.
int generate_certificate(const std::string& name, const std::string& dir) {
    const tls::certificate_and_key made = tls::make_self_signed(name);
    const auto pem = [](auto write) {
        BIO* bio = BIO_new(BIO_s_mem());
        if (bio == nullptr || write(bio) != 1) {
            BIO_free(bio);
            throw startup_error("--gen-cert: OpenSSL could not encode the certificate");
        }
        char* data = nullptr;
        const long n = BIO_get_mem_data(bio, &data);
        std::string out(data, static_cast<std::size_t>(n));
        BIO_free(bio);
        return out;
    };
    const std::string cert = pem([&](BIO* b) { return PEM_write_bio_X509(b, made.cert.get()); });
    const std::string key = pem([&](BIO* b) {
        return PEM_write_bio_PrivateKey(b, made.key.get(), nullptr, nullptr, 0, nullptr, nullptr);
    });
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
        throw startup_error(fmt::format("--gen-cert: cannot create '{}': {}", dir, ec.message()));
    }
    const auto write_new = [](const std::string& path, const std::string& text) {
        const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
            throw startup_error(
                fmt::format("--gen-cert: cannot create '{}': {}", path, std::strerror(errno)));
        }
        std::size_t off = 0;
        while (off < text.size()) {
            const ssize_t n = ::write(fd, text.data() + off, text.size() - off);
            if (n <= 0) {
                const int err = errno;
                ::close(fd);
                throw startup_error(
                    fmt::format("--gen-cert: cannot write '{}': {}", path, std::strerror(err)));
            }
            off += static_cast<std::size_t>(n);
        }
        ::close(fd);
    };
    const std::string cert_path = (std::filesystem::path(dir) / (name + ".pem")).string();
    const std::string key_path = (std::filesystem::path(dir) / (name + ".key")).string();
    if (std::filesystem::exists(cert_path) || std::filesystem::exists(key_path)) {
        throw startup_error(fmt::format("--gen-cert: '{}' or '{}' exists already; not overwriting",
                                        cert_path, key_path));
    }
    write_new(key_path, key);
    write_new(cert_path, cert);
    std::fprintf(stderr, "kaminaris: wrote %s and %s (0600)\n", cert_path.c_str(),
                 key_path.c_str());
    std::printf("pin=%s\n", tls::spki_pin(made.cert.get()).c_str());
    return 0;
}

int run(role who, int argc, char** argv) {
    std::vector<std::string_view> args(argv + (argc > 0 ? 1 : 0), argv + argc);
    const invocation inv = parse_invocation(args, who, real_env);
    if (inv.what == invocation::action::help) {
        std::fputs(help_text(who).c_str(), stdout);
        return 0;
    }
    if (inv.what == invocation::action::gen_cert) {
        return generate_certificate(inv.gen_name, inv.gen_dir);
    }
    if (inv.what == invocation::action::version) {
        std::printf("%s %s\n", program_name(who), KAMINARI_VERSION);
        return 0;
    }
    const auto apply_common = [](const common_options& c, const std::vector<std::string>& warns) {
        log::level lv = log::level::info;
        log::parse_level(c.loglevel, lv);
        log::set_level(lv);
        for (const auto& w : warns) {
            log::warn("{}", w);
        }
    };
    if (who == role::client) {
        net::client_config cfg{inv.remote, parse_client_options(inv.options), std::nullopt};
        cfg.opts.android_vpn = cfg.opts.android_vpn || inv.android_vpn;
        cfg.opts.common.tfo = cfg.opts.common.tfo || inv.fast_open;
        const bool plugin_ed = inv.sip003 && apply_plugin_defaults(cfg.opts);
        apply_common(cfg.opts.common, cfg.opts.warnings);
        if (plugin_ed) {
            log::info("shadowsocks plugin: websocket early data on (ed={}): the shadowsocks "
                      "client speaks first; 'ed=0' turns it off",
                      cfg.opts.ws->early_data);
        }
        if (cfg.opts.android_vpn) {
            // Before any worker starts: every connect_remote() from now on protects its socket.
            net::enable_protect();
            std::error_code ec;
            const auto cwd = std::filesystem::current_path(ec);
            log::info("android vpn: every socket to the server is protected through {} first",
                      (cwd / std::string(net::default_protect_path)).string());
        }
        if (cfg.opts.tls) {
            cfg.tls.emplace(*cfg.opts.tls);
        }
        return serve(inv, cfg, describe(cfg.opts));
    }
    net::server_config cfg{inv.remote, parse_server_options(inv.options), std::nullopt};
    cfg.opts.common.tfo = cfg.opts.common.tfo || inv.fast_open;
    if (inv.android_vpn) {
        cfg.opts.warnings.emplace_back("ignoring '-V': VPN mode is a client option");
    }
    apply_common(cfg.opts.common, cfg.opts.warnings);
    if (cfg.opts.tls) {
        cfg.tls.emplace(*cfg.opts.tls);
    }
    return serve(inv, cfg, describe(cfg.opts));
}

} // namespace

int app_main(role who, int argc, char** argv) noexcept {
    parent_at_start = getppid();
    log::set_program(program_name(who));
    // A peer closing mid-write must surface as EPIPE on that connection, not kill the process.
    std::signal(SIGPIPE, SIG_IGN);
    // SIGHUP never stops either program: ignored until serve() logs each one.
    std::signal(SIGHUP, SIG_IGN);
    try {
        return run(who, argc, argv);
    } catch (const config_error& e) {
        std::fprintf(stderr, "%s: error: %s\n%s\n", program_name(who), e.what(),
                     usage_line(who).c_str());
        return 2;
    } catch (const startup_error& e) {
        std::fprintf(stderr, "%s: error: %s\n", program_name(who), e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: error: %s\n", program_name(who), e.what());
        return 1;
    } catch (...) {
        std::fprintf(stderr, "%s: error: unknown failure\n", program_name(who));
        return 1;
    }
}

} // namespace kaminari

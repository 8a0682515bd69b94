#include "kaminari/tls/reloadable.hpp"

#include <openssl/bn.h>
#include <openssl/x509.h>

#include <exception>
#include <sys/stat.h>

namespace kaminari::tls {

reloadable_server_context::reloadable_server_context(const tls_server_options& opts)
    : opts_(opts)
    , current_(std::make_unique<server_context>(opts))
    , seen_(stamps()) {
}

engine reloadable_server_context::make_engine() const {
    const std::lock_guard lock(mutex_);
    return current_->make_engine();
}

std::optional<std::string> reloadable_server_context::reload() {
    if (!from_files()) {
        return std::string("the certificate was made at start (servername=); nothing to reload");
    }
    const auto before = stamps();
    std::unique_ptr<server_context> fresh;
    try {
        fresh = std::make_unique<server_context>(opts_);
    } catch (const std::exception& e) {
        seen_ = before; // do not retry the same broken files every check
        return std::string(e.what());
    }
    const std::lock_guard lock(mutex_);
    retired_.push_back(std::move(current_));
    current_ = std::move(fresh);
    seen_ = before;
    return std::nullopt;
}

bool reloadable_server_context::files_changed() {
    const auto now = stamps();
    if (now == seen_) {
        return false;
    }
    seen_ = now;
    return true;
}

std::vector<reloadable_server_context::stamp> reloadable_server_context::stamps() const {
    std::vector<stamp> out;
    for (const std::string* path : {&opts_.cert, &opts_.key, &opts_.ocsp}) {
        stamp s;
        struct stat st {};
        if (!path->empty() && ::stat(path->c_str(), &st) == 0) {
            s.exists = true;
            s.mtime_ns =
                static_cast<long long>(st.st_mtim.tv_sec) * 1'000'000'000LL + st.st_mtim.tv_nsec;
            s.size = static_cast<long long>(st.st_size);
            s.inode = static_cast<unsigned long long>(st.st_ino);
        }
        out.push_back(s);
    }
    return out;
}

std::string reloadable_server_context::serial() const {
    const std::lock_guard lock(mutex_);
    X509* cert = SSL_CTX_get0_certificate(current_->native_handle());
    if (cert == nullptr) {
        return "?";
    }
    BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
    if (bn == nullptr) {
        return "?";
    }
    char* hex = BN_bn2hex(bn);
    std::string out = hex != nullptr ? hex : "?";
    OPENSSL_free(hex);
    BN_free(bn);
    return out;
}

} // namespace kaminari::tls

#include "kaminari/tls/self_signed.hpp"

#include <kaminari/error.hpp>

#include <openssl/rand.h>

#include <array>
#include <string>

namespace kaminari::tls {

namespace {

[[noreturn]] void fail(std::string_view what, const error_code& ec) {
    throw startup_error("tls: cannot generate the self-signed certificate (" + std::string(what) +
                        "): " + ec.message());
}

template <class F>
auto checked(std::string_view what, F&& f) {
    error_code ec;
    auto r = call(ec, std::forward<F>(f));
    if (ec) {
        fail(what, ec);
    }
    return r;
}

bool is_ip_literal(const std::string& name) {
    asn1_octet_string_ptr ip(a2i_IPADDRESS(name.c_str()));
    ERR_clear_error();
    return ip != nullptr;
}

void add_extension(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
    x509_extension_ptr ext(checked(
        "extension", [&] { return X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str()); }));
    checked("extension", [&] { return X509_add_ext(cert, ext.get(), -1); });
}

} // namespace

certificate_and_key make_self_signed(std::string_view name_view) {
    std::string name(name_view);
    if (name.empty()) {
        throw startup_error("tls: 'servername=' is empty; expected a host name");
    }

    evp_pkey_ptr key(checked("P-256 key", [] { return EVP_EC_gen("P-256"); }));
    x509_ptr cert(checked("X509_new", [] { return X509_new(); }));
    checked("version", [&] { return X509_set_version(cert.get(), X509_VERSION_3); });

    // Serial: 128 random bits, top bit clear so the DER INTEGER stays positive and <= 20 bytes.
    std::array<unsigned char, 16> serial{};
    checked("serial", [&] { return RAND_bytes(serial.data(), serial.size()); });
    serial[0] &= 0x7f;
    serial[0] |= 0x40;
    bignum_ptr bn(
        checked("serial", [&] { return BN_bin2bn(serial.data(), serial.size(), nullptr); }));
    checked("serial",
            [&] { return BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get())); });

    // Backdated a day for clients with a slow clock.
    checked("validity", [&] { return X509_gmtime_adj(X509_getm_notBefore(cert.get()), -86400L); });
    checked("validity",
            [&] { return X509_gmtime_adj(X509_getm_notAfter(cert.get()), 825L * 86400L); });

    X509_NAME* subject = X509_get_subject_name(cert.get());
    // RFC 5280 ub-common-name is 64; a longer name lives in the subjectAltName only.
    if (name.size() <= 64) {
        checked("subject", [&] {
            return X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                                              reinterpret_cast<const unsigned char*>(name.data()),
                                              static_cast<int>(name.size()), -1, 0);
        });
    }
    checked("issuer", [&] { return X509_set_issuer_name(cert.get(), subject); });
    checked("public key", [&] { return X509_set_pubkey(cert.get(), key.get()); });

    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
    add_extension(cert.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE");
    add_extension(cert.get(), &ctx, NID_key_usage, "critical,digitalSignature");
    add_extension(cert.get(), &ctx, NID_ext_key_usage, "serverAuth");
    add_extension(cert.get(), &ctx, NID_subject_key_identifier, "hash");

    // Built from the name itself, not a config string, so no character in it is syntax.
    general_names_ptr names(checked("subjectAltName", [] { return GENERAL_NAMES_new(); }));
    general_name_ptr entry(checked("subjectAltName", [&] {
        return a2i_GENERAL_NAME(nullptr, nullptr, nullptr,
                                is_ip_literal(name) ? GEN_IPADD : GEN_DNS, name.c_str(), 0);
    }));
    checked("subjectAltName", [&] { return sk_GENERAL_NAME_push(names.get(), entry.get()); });
    entry.release();
    checked("subjectAltName", [&] {
        return X509_add1_ext_i2d(cert.get(), NID_subject_alt_name, names.get(), 0,
                                 X509V3_ADD_DEFAULT);
    });

    checked("sign", [&] { return X509_sign(cert.get(), key.get(), EVP_sha256()); });
    return {std::move(cert), std::move(key)};
}

} // namespace kaminari::tls

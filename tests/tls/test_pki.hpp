#pragma once

// Test certificates made at test time with the OpenSSL API, written to a private temp dir:
// a root CA, an intermediate, leaves with ECDSA, RSA and Ed25519 keys (PEM and DER), and a
// DER OCSP response for the ECDSA leaf. Generated once per test process.

#include <kaminari/tls/openssl_ptr.hpp>

#include <openssl/pem.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace kaminari::test {

inline void pki_check(bool ok, const char* what) {
    if (!ok) {
        throw std::runtime_error(std::string("test pki: ") + what + ": " +
                                 tls::take_error().message());
    }
}

inline tls::evp_pkey_ptr make_key(const std::string& type) {
    tls::evp_pkey_ptr key;
    if (type == "ec") {
        key.reset(EVP_EC_gen("P-256"));
    } else if (type == "rsa") {
        key.reset(EVP_RSA_gen(2048));
    } else {
        key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
    }
    pki_check(key != nullptr, "keygen");
    return key;
}

inline void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    tls::x509_extension_ptr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
    pki_check(ext != nullptr, "extension");
    pki_check(X509_add_ext(cert, ext.get(), -1) == 1, "add extension");
}

/// A certificate for `cn` signed by issuer (self-signed when issuer is null).
inline tls::x509_ptr make_cert(const std::string& cn, const std::string& san, EVP_PKEY* key,
                               X509* issuer, EVP_PKEY* issuer_key, bool ca) {
    tls::x509_ptr cert(X509_new());
    pki_check(cert != nullptr, "X509_new");
    X509_set_version(cert.get(), X509_VERSION_3);
    unsigned char serial[8];
    RAND_bytes(serial, sizeof serial);
    serial[0] &= 0x7f;
    tls::bignum_ptr bn(BN_bin2bn(serial, sizeof serial, nullptr));
    BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get()));
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400L * 30);
    X509_NAME* name = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
    X509_set_pubkey(cert.get(), key);
    X509* iss = issuer ? issuer : cert.get();
    add_ext(cert.get(), iss, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
    add_ext(cert.get(), iss, NID_subject_key_identifier, "hash");
    if (ca) {
        add_ext(cert.get(), iss, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(cert.get(), iss, NID_ext_key_usage, "serverAuth");
        add_ext(cert.get(), iss, NID_subject_alt_name, san);
    }
    EVP_PKEY* signer = issuer_key ? issuer_key : key;
    const EVP_MD* md = EVP_PKEY_is_a(signer, "ED25519") ? nullptr : EVP_sha256();
    pki_check(X509_sign(cert.get(), signer, md) > 0, "sign");
    return cert;
}

inline void write_pem_certs(const std::string& path, std::initializer_list<X509*> certs) {
    tls::bio_ptr bio(BIO_new_file(path.c_str(), "wb"));
    pki_check(bio != nullptr, "open");
    for (X509* c : certs) {
        pki_check(PEM_write_bio_X509(bio.get(), c) == 1, "write pem");
    }
}

inline void write_der_cert(const std::string& path, X509* cert) {
    tls::bio_ptr bio(BIO_new_file(path.c_str(), "wb"));
    pki_check(bio != nullptr && i2d_X509_bio(bio.get(), cert) == 1, "write der");
}

inline void write_pem_key(const std::string& path, EVP_PKEY* key) {
    tls::bio_ptr bio(BIO_new_file(path.c_str(), "wb"));
    pki_check(bio != nullptr &&
                  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr),
              "write key");
}

inline void write_der_key(const std::string& path, EVP_PKEY* key) {
    tls::bio_ptr bio(BIO_new_file(path.c_str(), "wb"));
    pki_check(bio != nullptr && i2d_PrivateKey_bio(bio.get(), key) == 1, "write der key");
}

inline void write_bytes(const std::string& path, const std::vector<unsigned char>& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
}

/// A "good" OCSP response for `cert`, signed by its issuer.
inline std::vector<unsigned char> make_ocsp_response(X509* cert, X509* issuer, EVP_PKEY* key) {
    tls::ocsp_basicresp_ptr basic(OCSP_BASICRESP_new());
    OCSP_CERTID* id = OCSP_cert_to_id(nullptr, cert, issuer);
    pki_check(id != nullptr, "certid");
    tls::ocsp_certid_ptr id_owner(id);
    tls::asn1_time_ptr now(X509_gmtime_adj(nullptr, 0));
    tls::asn1_time_ptr next(X509_gmtime_adj(nullptr, 86400));
    pki_check(OCSP_basic_add1_status(basic.get(), id, V_OCSP_CERTSTATUS_GOOD, 0, nullptr, now.get(),
                                     next.get()) != nullptr,
              "status");
    pki_check(OCSP_basic_sign(basic.get(), issuer, key, EVP_sha256(), nullptr, 0) == 1, "sign");
    tls::ocsp_response_ptr resp(OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, basic.get()));
    pki_check(resp != nullptr, "response");
    unsigned char* der = nullptr;
    int len = i2d_OCSP_RESPONSE(resp.get(), &der);
    pki_check(len > 0, "encode");
    tls::openssl_bytes_ptr owner(der);
    return {der, der + len};
}

struct pki {
    std::filesystem::path dir;
    std::string ca_pem;       ///< the root, to trust through SSL_CERT_FILE
    std::string other_ca_pem; ///< an unrelated root
    std::string ec_chain_pem; ///< leaf (ECDSA) + intermediate
    std::string ec_key_pem;
    std::string ec_key_der;
    std::string ec_cert_der; ///< leaf only, signed by the root directly
    std::string ec_root_leaf_pem;
    std::string rsa_cert_pem, rsa_key_pem, rsa_key_der;
    std::string ed_cert_pem, ed_key_pem, ed_key_der;
    std::string ocsp_der;
    std::vector<unsigned char> ocsp_bytes;
    std::string garbage;   ///< not a certificate or key
    std::string empty_dir; ///< a directory with no certificates, for SSL_CERT_DIR

    std::string path(const std::string& name) const { return (dir / name).string(); }
};

inline pki make_pki() {
    pki p;
    std::string templ = (std::filesystem::temp_directory_path() / "kaminari-tls-XXXXXX").string();
    pki_check(mkdtemp(templ.data()) != nullptr, "mkdtemp");
    p.dir = templ;
    std::filesystem::create_directory(p.dir / "empty");
    p.empty_dir = p.path("empty");

    auto root_key = make_key("ec");
    auto root = make_cert("kaminari test root", "", root_key.get(), nullptr, nullptr, true);
    auto other_key = make_key("ec");
    auto other = make_cert("other root", "", other_key.get(), nullptr, nullptr, true);
    auto inter_key = make_key("ec");
    auto inter = make_cert("kaminari test intermediate", "", inter_key.get(), root.get(),
                           root_key.get(), true);
    const std::string san = "DNS:test.example,DNS:localhost,IP:127.0.0.1";

    p.ca_pem = p.path("ca.pem");
    write_pem_certs(p.ca_pem, {root.get()});
    p.other_ca_pem = p.path("other.pem");
    write_pem_certs(p.other_ca_pem, {other.get()});

    auto ec_key = make_key("ec");
    auto ec_leaf =
        make_cert("test.example", san, ec_key.get(), inter.get(), inter_key.get(), false);
    p.ec_chain_pem = p.path("ec-chain.pem");
    write_pem_certs(p.ec_chain_pem, {ec_leaf.get(), inter.get()});
    p.ec_key_pem = p.path("ec-key.pem");
    write_pem_key(p.ec_key_pem, ec_key.get());
    p.ec_key_der = p.path("ec-key.der");
    write_der_key(p.ec_key_der, ec_key.get());
    auto ec_root_leaf =
        make_cert("test.example", san, ec_key.get(), root.get(), root_key.get(), false);
    p.ec_cert_der = p.path("ec-cert.der");
    write_der_cert(p.ec_cert_der, ec_root_leaf.get());
    p.ec_root_leaf_pem = p.path("ec-root-leaf.pem");
    write_pem_certs(p.ec_root_leaf_pem, {ec_root_leaf.get()});

    auto rsa_key = make_key("rsa");
    auto rsa_leaf =
        make_cert("test.example", san, rsa_key.get(), root.get(), root_key.get(), false);
    p.rsa_cert_pem = p.path("rsa-cert.pem");
    write_pem_certs(p.rsa_cert_pem, {rsa_leaf.get()});
    p.rsa_key_pem = p.path("rsa-key.pem");
    write_pem_key(p.rsa_key_pem, rsa_key.get());
    p.rsa_key_der = p.path("rsa-key.der");
    write_der_key(p.rsa_key_der, rsa_key.get());

    auto ed_key = make_key("ed25519");
    auto ed_leaf = make_cert("test.example", san, ed_key.get(), root.get(), root_key.get(), false);
    p.ed_cert_pem = p.path("ed-cert.pem");
    write_pem_certs(p.ed_cert_pem, {ed_leaf.get()});
    p.ed_key_pem = p.path("ed-key.pem");
    write_pem_key(p.ed_key_pem, ed_key.get());
    p.ed_key_der = p.path("ed-key.der");
    write_der_key(p.ed_key_der, ed_key.get());

    p.ocsp_bytes = make_ocsp_response(ec_root_leaf.get(), root.get(), root_key.get());
    p.ocsp_der = p.path("ocsp.der");
    write_bytes(p.ocsp_der, p.ocsp_bytes);

    p.garbage = p.path("garbage.txt");
    write_bytes(p.garbage, {'n', 'o', 't', ' ', 'a', ' ', 'c', 'e', 'r', 't', '\n'});
    return p;
}

/// The process-wide test PKI (removed at exit).
inline const pki& shared_pki() {
    static const struct holder {
        pki p = make_pki();
        ~holder() {
            std::error_code ec;
            std::filesystem::remove_all(p.dir, ec);
        }
    } h;
    return h.p;
}

/// Makes the OpenSSL default trust store exactly `ca_file` (plus an empty directory).
inline void trust_only(const std::string& ca_file) {
    ::setenv("SSL_CERT_FILE", ca_file.c_str(), 1);
    ::setenv("SSL_CERT_DIR", shared_pki().empty_dir.c_str(), 1);
}

} // namespace kaminari::test

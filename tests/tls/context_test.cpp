#include "kaminari/tls/context.hpp"

#include "tls/pump.hpp"
#include "tls/test_pki.hpp"

#include <kaminari/error.hpp>
#include <kaminari/tls/self_signed.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace kaminari::tls {
namespace {

using test::pump_handshake;
using test::shared_pki;
using test::trust_only;

tls_client_options client_opts(std::string sni = "test.example") {
    tls_client_options o;
    o.sni = std::move(sni);
    return o;
}

tls_server_options files(std::string cert, std::string key) {
    tls_server_options o;
    o.cert = std::move(cert);
    o.key = std::move(key);
    return o;
}

struct outcome {
    error_code client;
    error_code server;
    int version = 0;
};

outcome handshake_with(const server_context& sctx, const std::string& sni = "test.example") {
    client_context cctx(client_opts(sni));
    engine c = cctx.make_engine();
    engine s = sctx.make_engine();
    auto r = pump_handshake(c, s);
    return {r.client, r.server, SSL_version(c.native_handle())};
}

template <class Error, class F>
std::string thrown_message(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "(nothing thrown)";
}

TEST(ServerContext, LoadsPemChainAndPemKey) {
    trust_only(shared_pki().ca_pem);
    server_context sctx(files(shared_pki().ec_chain_pem, shared_pki().ec_key_pem));
    auto r = handshake_with(sctx);
    EXPECT_FALSE(r.client) << r.client.message();
    EXPECT_FALSE(r.server) << r.server.message();
}

TEST(ServerContext, LoadsDerCertificateAndDerKey) {
    trust_only(shared_pki().ca_pem);
    server_context sctx(files(shared_pki().ec_cert_der, shared_pki().ec_key_der));
    auto r = handshake_with(sctx);
    EXPECT_FALSE(r.client) << r.client.message();
}

TEST(ServerContext, LoadsRsaKeysPemAndDer) {
    trust_only(shared_pki().ca_pem);
    for (const auto& key : {shared_pki().rsa_key_pem, shared_pki().rsa_key_der}) {
        server_context sctx(files(shared_pki().rsa_cert_pem, key));
        auto r = handshake_with(sctx);
        EXPECT_FALSE(r.client) << key << ": " << r.client.message();
    }
}

TEST(ServerContext, RsaServesTls12Too) {
    trust_only(shared_pki().ca_pem);
    server_context sctx(files(shared_pki().rsa_cert_pem, shared_pki().rsa_key_pem));
    SSL_CTX_set_max_proto_version(sctx.native_handle(), TLS1_2_VERSION);
    auto r = handshake_with(sctx);
    EXPECT_FALSE(r.client) << r.client.message();
    EXPECT_EQ(r.version, TLS1_2_VERSION);
}

TEST(ServerContext, LoadsEd25519KeysPemAndDer) {
    trust_only(shared_pki().ca_pem);
    for (const auto& key : {shared_pki().ed_key_pem, shared_pki().ed_key_der}) {
        server_context sctx(files(shared_pki().ed_cert_pem, key));
        auto r = handshake_with(sctx);
        EXPECT_FALSE(r.client) << key << ": " << r.client.message();
    }
}

TEST(ServerContext, MismatchedKeyNamesTheKeyFile) {
    const auto& p = shared_pki();
    auto msg = thrown_message<startup_error>(
        [&] { server_context sctx(files(p.ec_chain_pem, p.rsa_key_pem)); });
    EXPECT_NE(msg.find("'key=" + p.rsa_key_pem + "'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("does not match the certificate in 'cert=" + p.ec_chain_pem + "'"),
              std::string::npos)
        << msg;
}

TEST(ServerContext, MissingFilesAreNamed) {
    const auto& p = shared_pki();
    std::string missing = p.path("missing.pem");
    auto msg =
        thrown_message<startup_error>([&] { server_context sctx(files(missing, p.ec_key_pem)); });
    EXPECT_EQ(msg, "tls: cannot read 'cert=" + missing + "': No such file or directory");
    msg =
        thrown_message<startup_error>([&] { server_context sctx(files(p.ec_chain_pem, missing)); });
    EXPECT_EQ(msg, "tls: cannot read 'key=" + missing + "': No such file or directory");
    auto o = files(p.ec_chain_pem, p.ec_key_pem);
    o.ocsp = missing;
    msg = thrown_message<startup_error>([&] { server_context sctx(o); });
    EXPECT_EQ(msg, "tls: cannot read 'ocsp=" + missing + "': No such file or directory");
}

TEST(ServerContext, GarbageFilesAreNamed) {
    const auto& p = shared_pki();
    auto msg =
        thrown_message<startup_error>([&] { server_context sctx(files(p.garbage, p.ec_key_pem)); });
    EXPECT_EQ(msg.rfind("tls: 'cert=" + p.garbage + "' is not a PEM or DER certificate", 0), 0u)
        << msg;
    msg = thrown_message<startup_error>(
        [&] { server_context sctx(files(p.ec_chain_pem, p.garbage)); });
    EXPECT_EQ(msg.rfind("tls: 'key=" + p.garbage + "' is not an unencrypted PEM or DER", 0), 0u)
        << msg;
    // A certificate is not a key, and a directory is not a file.
    msg = thrown_message<startup_error>(
        [&] { server_context sctx(files(p.ec_chain_pem, p.ec_chain_pem)); });
    EXPECT_NE(msg.find("'key=" + p.ec_chain_pem + "'"), std::string::npos) << msg;
    msg = thrown_message<startup_error>(
        [&] { server_context sctx(files(p.empty_dir, p.ec_key_pem)); });
    EXPECT_NE(msg.find("'cert=" + p.empty_dir + "'"), std::string::npos) << msg;
    auto o = files(p.ec_chain_pem, p.ec_key_pem);
    o.ocsp = p.garbage;
    msg = thrown_message<startup_error>([&] { server_context sctx(o); });
    EXPECT_EQ(msg.rfind("tls: 'ocsp=" + p.garbage + "' is not a DER OCSP response", 0), 0u) << msg;
}

TEST(ServerContext, MissingCertificateIsAConfigError) {
    tls_server_options none;
    EXPECT_THROW(server_context{none}, config_error);
    EXPECT_THROW(server_context(files(shared_pki().ec_chain_pem, "")), config_error);
}

TEST(ServerContext, RefusesOldProtocols) {
    server_context sctx(files(shared_pki().ec_chain_pem, shared_pki().ec_key_pem));
    EXPECT_EQ(SSL_CTX_get_min_proto_version(sctx.native_handle()), TLS1_2_VERSION);
    EXPECT_EQ(SSL_CTX_get_max_early_data(sctx.native_handle()),
              server_context::default_max_early_data);
    EXPECT_EQ(SSL_CTX_get_options(sctx.native_handle()) & SSL_OP_NO_ANTI_REPLAY, 0u);
}

std::string subject_cn(X509* cert) {
    char buf[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf);
    return buf;
}

std::vector<std::string> san_entries(X509* cert) {
    std::vector<std::string> out;
    general_names_ptr names(static_cast<GENERAL_NAMES*>(
        X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
        const GENERAL_NAME* n = sk_GENERAL_NAME_value(names.get(), i);
        if (n->type == GEN_DNS) {
            out.push_back("DNS:" + std::string(reinterpret_cast<const char*>(
                                                   ASN1_STRING_get0_data(n->d.dNSName)),
                                               ASN1_STRING_length(n->d.dNSName)));
        } else if (n->type == GEN_IPADD) {
            out.push_back("IP:" + std::to_string(ASN1_STRING_length(n->d.iPAddress)) + "bytes");
        }
    }
    return out;
}

TEST(SelfSigned, HasNameInCnAndSanWithP256Key) {
    certificate_and_key ck = make_self_signed("self.example");
    EXPECT_EQ(subject_cn(ck.cert.get()), "self.example");
    EXPECT_EQ(san_entries(ck.cert.get()), std::vector<std::string>{"DNS:self.example"});
    EXPECT_EQ(
        X509_NAME_cmp(X509_get_subject_name(ck.cert.get()), X509_get_issuer_name(ck.cert.get())),
        0);
    EXPECT_TRUE(EVP_PKEY_is_a(ck.key.get(), "EC"));
    char group[64] = {};
    EVP_PKEY_get_group_name(ck.key.get(), group, sizeof group, nullptr);
    EXPECT_STREQ(group, "prime256v1");
    EXPECT_EQ(X509_verify(ck.cert.get(), ck.key.get()), 1);
    EXPECT_EQ(X509_check_private_key(ck.cert.get(), ck.key.get()), 1);
    EXPECT_EQ(X509_get_version(ck.cert.get()), X509_VERSION_3);
}

TEST(SelfSigned, IpLiteralGoesToIpSan) {
    certificate_and_key ck = make_self_signed("::1");
    EXPECT_EQ(san_entries(ck.cert.get()), std::vector<std::string>{"IP:16bytes"});
}

TEST(SelfSigned, LongNameOnlyInSan) {
    std::string name(70, 'a');
    name += ".example";
    certificate_and_key ck = make_self_signed(name);
    EXPECT_EQ(subject_cn(ck.cert.get()), "");
    EXPECT_EQ(san_entries(ck.cert.get()), std::vector<std::string>{"DNS:" + name});
}

TEST(SelfSigned, EmptyNameThrows) {
    EXPECT_THROW(make_self_signed(""), startup_error);
}

TEST(SelfSigned, ServerUsesItAndClientsThatTrustItVerify) {
    tls_server_options o;
    o.servername = "self.example";
    server_context sctx(o);
    X509* cert = SSL_CTX_get0_certificate(sctx.native_handle());
    ASSERT_NE(cert, nullptr);
    EXPECT_EQ(subject_cn(cert), "self.example");
    std::string pem = shared_pki().path("self-signed.pem");
    test::write_pem_certs(pem, {cert});
    trust_only(pem);
    auto r = handshake_with(sctx, "self.example");
    EXPECT_FALSE(r.client) << r.client.message();
    r = handshake_with(sctx, "other.example");
    EXPECT_EQ(r.client.message(), "certificate verify failed: hostname mismatch");
    // The same certificate for every connection of the context.
    EXPECT_EQ(SSL_CTX_get0_certificate(sctx.native_handle()), cert);
    // Not trusted by default.
    trust_only(shared_pki().ca_pem);
    r = handshake_with(sctx, "self.example");
    EXPECT_EQ(r.client.value(), X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT);
}

TEST(ClientContext, AlpnWireFormat) {
    auto wire = alpn_wire_format({"h2", "http/1.1"});
    EXPECT_EQ(std::string(wire.begin(), wire.end()), std::string("\x02h2\x08http/1.1"));
    EXPECT_THROW(alpn_wire_format({"h2", ""}), config_error);
    EXPECT_THROW(alpn_wire_format({std::string(256, 'x')}), config_error);
    EXPECT_EQ(alpn_wire_format({std::string(255, 'x')}).size(), 256u);
    tls_client_options o = client_opts();
    o.alpn = {""};
    EXPECT_THROW(client_context{o}, config_error);
}

TEST(ClientContext, VerifiesByDefaultAndRefusesOldProtocols) {
    client_context cctx(client_opts());
    EXPECT_EQ(SSL_CTX_get_verify_mode(cctx.native_handle()), SSL_VERIFY_PEER);
    EXPECT_EQ(SSL_CTX_get_min_proto_version(cctx.native_handle()), TLS1_2_VERSION);
    auto o = client_opts();
    o.insecure = true;
    client_context insecure(o);
    EXPECT_EQ(SSL_CTX_get_verify_mode(insecure.native_handle()), SSL_VERIFY_NONE);
}

TEST(ClientContext, EngineCarriesSniAndEarlyDataSetting) {
    auto o = client_opts("sni.example");
    o.early_data = true;
    client_context cctx(o);
    engine e = cctx.make_engine();
    EXPECT_STREQ(SSL_get_servername(e.native_handle(), TLSEXT_NAMETYPE_host_name), "sni.example");
    EXPECT_EQ(e.early_data_limit(), 0u); // no session yet
}

TEST(ClientContext, SharedBetweenThreads) {
    trust_only(shared_pki().ca_pem);
    client_context cctx(client_opts());
    server_context sctx(files(shared_pki().ec_chain_pem, shared_pki().ec_key_pem));
    std::vector<std::thread> threads;
    std::atomic<int> ok{0};
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 10; ++i) {
                engine c = cctx.make_engine();
                engine s = sctx.make_engine();
                auto r = pump_handshake(c, s);
                std::array<std::uint8_t, 16> buf;
                error_code ec;
                std::size_t n = 0;
                c.read(buf, ec, n); // takes the tickets
                if (!r.client && !r.server) {
                    ++ok;
                }
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    EXPECT_EQ(ok.load(), 40);
    EXPECT_LE(cctx.sessions().size(), session_cache::capacity);
    EXPECT_GT(cctx.sessions().size(), 0u);
}

} // namespace
} // namespace kaminari::tls

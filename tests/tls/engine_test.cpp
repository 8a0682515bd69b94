#include "kaminari/tls/engine.hpp"

#include "tls/pump.hpp"
#include "tls/test_pki.hpp"

#include <kaminari/tls/context.hpp>

#include <boost/asio/error.hpp>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace kaminari::tls {
namespace {

using test::pump_handshake;
using test::send;
using test::shared_pki;
using test::transfer;
using test::trust_only;

tls_client_options client_opts(std::string sni, std::vector<std::string> alpn = {}) {
    tls_client_options o;
    o.sni = std::move(sni);
    o.alpn = std::move(alpn);
    return o;
}

tls_server_options server_opts() {
    tls_server_options o;
    o.cert = shared_pki().ec_chain_pem;
    o.key = shared_pki().ec_key_pem;
    return o;
}

std::string alpn_of(const engine& e) {
    const unsigned char* p = nullptr;
    unsigned int len = 0;
    SSL_get0_alpn_selected(e.native_handle(), &p, &len);
    return std::string(reinterpret_cast<const char*>(p), len);
}

// Reads whatever arrived (session tickets) so the client's new-session callback runs.
void drain(engine& e) {
    std::array<std::uint8_t, 256> buf;
    error_code ec;
    std::size_t n = 0;
    e.read(buf, ec, n);
    EXPECT_FALSE(ec) << ec.message();
}

// One full handshake, so that `cctx` holds a session ticket from `sctx`.
void obtain_ticket(client_context& cctx, server_context& sctx) {
    engine c = cctx.make_engine();
    engine s = sctx.make_engine();
    ASSERT_FALSE(pump_handshake(c, s).client);
    drain(c);
}

// Makes the test CA the only trusted one before the contexts that read it are built.
struct trusting_test_ca {
    trusting_test_ca() { trust_only(shared_pki().ca_pem); }
};

// A client and a server engine for "test.example", trusted, before the handshake.
struct engine_pair : trusting_test_ca {
    client_context cctx{client_opts("test.example")};
    server_context sctx{server_opts()};
    engine c = cctx.make_engine();
    engine s = sctx.make_engine();
};

TEST(Engine, HandshakeSendsSniAndNegotiatesHttp11) {
    trust_only(shared_pki().ca_pem);
    client_context cctx(client_opts("test.example", {"h2", "http/1.1"}));
    server_context sctx(server_opts());
    engine c = cctx.make_engine();
    engine s = sctx.make_engine();
    auto r = pump_handshake(c, s);
    ASSERT_FALSE(r.client) << r.client.message();
    ASSERT_FALSE(r.server) << r.server.message();
    EXPECT_STREQ(SSL_get_servername(s.native_handle(), TLSEXT_NAMETYPE_host_name), "test.example");
    EXPECT_EQ(alpn_of(c), "http/1.1");
    EXPECT_EQ(alpn_of(s), "http/1.1");
    EXPECT_EQ(SSL_version(c.native_handle()), TLS1_3_VERSION);
    EXPECT_FALSE(c.session_reused());

    EXPECT_EQ(send(c, s, "hello server"), "hello server");
    EXPECT_EQ(send(s, c, "hello client"), "hello client");
    std::string big(300 * 1024, 'x');
    for (std::size_t i = 0; i < big.size(); ++i) {
        big[i] = static_cast<char>(i * 131 % 251);
    }
    EXPECT_EQ(send(c, s, big), big);
    EXPECT_EQ(send(s, c, big), big);
}

TEST(Engine, AlpnAnswersFirstOfferedWithoutHttp11) {
    trust_only(shared_pki().ca_pem);
    client_context cctx(client_opts("test.example", {"h2", "spdy/3"}));
    server_context sctx(server_opts());
    engine c = cctx.make_engine();
    engine s = sctx.make_engine();
    auto r = pump_handshake(c, s);
    ASSERT_FALSE(r.client) << r.client.message();
    EXPECT_EQ(alpn_of(c), "h2");
}

TEST(Engine, MuxAlpnSelectedOnlyByAServerThatTakesIt) {
    trust_only(shared_pki().ca_pem);
    // kaminaric's tls;mux=<n>: its mux links offer kaminari-mux last, after http/1.1.
    auto mux_opts = client_opts("test.example");
    mux_opts.mux_alpn = true;
    client_context cctx(mux_opts);
    auto taking = server_opts();
    taking.mux_alpn = true; // kaminaris tls
    server_context sctx(taking);
    engine c = cctx.make_engine(true);
    engine s = sctx.make_engine();
    auto r = pump_handshake(c, s);
    ASSERT_FALSE(r.client) << r.client.message();
    EXPECT_EQ(c.alpn(), "kaminari-mux");
    EXPECT_EQ(s.alpn(), "kaminari-mux");

    // Its other connections (UDP associations) do not offer it: no ALPN at all here.
    engine c1 = cctx.make_engine();
    engine s1 = sctx.make_engine();
    ASSERT_FALSE(pump_handshake(c1, s1).client);
    EXPECT_EQ(c1.alpn(), "");

    // A server that does not take it (kaminaris wss, or one from before it) settles on
    // another protocol, and the client sees that it did: http/1.1, or the first of alpn=.
    server_context other(server_opts());
    for (auto [alpn, want] : {std::pair{std::vector<std::string>{}, "http/1.1"},
                              std::pair{std::vector<std::string>{"h2"}, "h2"}}) {
        auto o = client_opts("test.example", alpn);
        o.mux_alpn = true;
        client_context cc(o);
        engine c2 = cc.make_engine(true);
        engine s2 = other.make_engine();
        auto r2 = pump_handshake(c2, s2);
        ASSERT_FALSE(r2.client) << r2.client.message();
        EXPECT_EQ(c2.alpn(), want);
    }
    // Without it offered, a server that takes it answers as before.
    client_context plain(client_opts("test.example", {"h2", "http/1.1"}));
    engine c3 = plain.make_engine(true); // no mux_alpn: nothing added
    engine s3 = sctx.make_engine();
    ASSERT_FALSE(pump_handshake(c3, s3).client);
    EXPECT_EQ(c3.alpn(), "http/1.1");
}

TEST(Engine, NoAlpnOfferedNoneSelected) {
    engine_pair p;
    auto r = pump_handshake(p.c, p.s);
    ASSERT_FALSE(r.client) << r.client.message();
    EXPECT_EQ(alpn_of(p.c), "");
    EXPECT_EQ(p.c.alpn(), "");
}

TEST(Engine, UntrustedCertificateFailsWithReason) {
    trust_only(shared_pki().other_ca_pem);
    client_context cctx(client_opts("test.example"));
    server_context sctx(server_opts());
    engine c = cctx.make_engine();
    engine s = sctx.make_engine();
    auto r = pump_handshake(c, s);
    ASSERT_TRUE(r.client);
    EXPECT_EQ(&r.client.category(), &verify_category());
    EXPECT_EQ(r.client.value(), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    EXPECT_EQ(r.client.message(),
              "certificate verify failed: unable to get local issuer certificate");
    EXPECT_TRUE(r.server); // the client's alert
}

TEST(Engine, WrongNameFailsWithHostnameMismatch) {
    trust_only(shared_pki().ca_pem);
    client_context cctx(client_opts("wrong.example"));
    server_context sctx(server_opts());
    engine c = cctx.make_engine();
    engine s = sctx.make_engine();
    auto r = pump_handshake(c, s);
    ASSERT_TRUE(r.client);
    EXPECT_EQ(r.client.value(), X509_V_ERR_HOSTNAME_MISMATCH);
    EXPECT_EQ(r.client.message(), "certificate verify failed: hostname mismatch");
}

TEST(Engine, IpLiteralSniIsCheckedAsIpAndNotSent) {
    trust_only(shared_pki().ca_pem);
    client_context cctx(client_opts("127.0.0.1"));
    server_context sctx(server_opts());
    engine c = cctx.make_engine();
    engine s = sctx.make_engine();
    auto r = pump_handshake(c, s);
    ASSERT_FALSE(r.client) << r.client.message();
    EXPECT_EQ(SSL_get_servername(s.native_handle(), TLSEXT_NAMETYPE_host_name), nullptr);

    client_context wrong(client_opts("127.0.0.2"));
    engine c2 = wrong.make_engine();
    engine s2 = sctx.make_engine();
    r = pump_handshake(c2, s2);
    EXPECT_EQ(r.client.value(), X509_V_ERR_IP_ADDRESS_MISMATCH);
}

TEST(Engine, InsecureSkipsVerification) {
    trust_only(shared_pki().other_ca_pem);
    auto opts = client_opts("wrong.example");
    opts.insecure = true;
    client_context cctx(opts);
    server_context sctx(server_opts());
    engine c = cctx.make_engine();
    engine s = sctx.make_engine();
    auto r = pump_handshake(c, s);
    ASSERT_FALSE(r.client) << r.client.message();
    ASSERT_FALSE(r.server) << r.server.message();
    EXPECT_EQ(send(c, s, "ok"), "ok");
}

TEST(Engine, OcspResponseIsStapled) {
    trust_only(shared_pki().ca_pem);
    auto so = server_opts();
    so.ocsp = shared_pki().ocsp_der;
    client_context cctx(client_opts("test.example"));
    server_context sctx(so);
    for (int i = 0; i < 2; ++i) {
        engine c = cctx.make_engine();
        SSL_set_tlsext_status_type(c.native_handle(), TLSEXT_STATUSTYPE_ocsp);
        engine s = sctx.make_engine();
        auto r = pump_handshake(c, s);
        ASSERT_FALSE(r.client) << r.client.message();
        const unsigned char* resp = nullptr;
        long len = SSL_get_tlsext_status_ocsp_resp(c.native_handle(), &resp);
        ASSERT_GT(len, 0);
        EXPECT_EQ(std::vector<unsigned char>(resp, resp + len), shared_pki().ocsp_bytes);
    }
}

TEST(Engine, NoStapleWithoutOcspOption) {
    trust_only(shared_pki().ca_pem);
    client_context cctx(client_opts("test.example"));
    server_context sctx(server_opts());
    engine c = cctx.make_engine();
    SSL_set_tlsext_status_type(c.native_handle(), TLSEXT_STATUSTYPE_ocsp);
    engine s = sctx.make_engine();
    ASSERT_FALSE(pump_handshake(c, s).client);
    const unsigned char* resp = nullptr;
    EXPECT_EQ(SSL_get_tlsext_status_ocsp_resp(c.native_handle(), &resp), -1);
}

TEST(Engine, ResumptionAndEarlyDataAccepted) {
    trust_only(shared_pki().ca_pem);
    auto co = client_opts("test.example", {"http/1.1"});
    co.early_data = true;
    client_context cctx(co);
    server_context sctx(server_opts());
    {
        engine c = cctx.make_engine();
        engine s = sctx.make_engine();
        EXPECT_EQ(c.early_data_limit(), 0u); // no session yet
        ASSERT_FALSE(pump_handshake(c, s).client);
        drain(c);
    }
    ASSERT_GE(cctx.sessions().size(), 1u);

    engine c = cctx.make_engine();
    engine s = sctx.make_engine();
    ASSERT_EQ(c.early_data_limit(), server_context::default_max_early_data);
    std::string early = "GET / early";
    error_code ec;
    std::size_t n = 0;
    auto w = c.write_early_data({reinterpret_cast<const std::uint8_t*>(early.data()), early.size()},
                                ec, n);
    ASSERT_FALSE(ec) << ec.message();
    EXPECT_EQ(w, engine::want_output);
    EXPECT_EQ(n, early.size());
    transfer(c, s);

    std::string got;
    bool finished = false;
    for (int i = 0; i < 16 && !finished; ++i) {
        std::array<std::uint8_t, 1024> buf;
        s.read_early_data(buf, ec, n, finished);
        ASSERT_FALSE(ec) << ec.message();
        got.append(reinterpret_cast<const char*>(buf.data()), n);
        transfer(s, c);
        c.handshake(ec);
        ASSERT_FALSE(ec) << ec.message();
        transfer(c, s);
    }
    ASSERT_TRUE(finished);
    EXPECT_EQ(got, early);
    auto r = pump_handshake(c, s);
    ASSERT_FALSE(r.client) << r.client.message();
    ASSERT_FALSE(r.server) << r.server.message();
    EXPECT_TRUE(c.session_reused());
    EXPECT_TRUE(c.early_data_accepted());
    EXPECT_TRUE(s.early_data_accepted());
    EXPECT_EQ(send(c, s, "after"), "after");
}

TEST(Engine, EarlyDataRejectedByAnotherServer) {
    trust_only(shared_pki().ca_pem);
    auto co = client_opts("test.example");
    co.early_data = true;
    client_context cctx(co);
    server_context first(server_opts());
    ASSERT_NO_FATAL_FAILURE(obtain_ticket(cctx, first));
    // Another process: other ticket keys, and no early data at all.
    server_context second(server_opts());
    second.set_max_early_data(0);
    engine c = cctx.make_engine();
    engine s = second.make_engine();
    ASSERT_GT(c.early_data_limit(), 0u);
    std::string early = "lost?";
    error_code ec;
    std::size_t n = 0;
    c.write_early_data({reinterpret_cast<const std::uint8_t*>(early.data()), early.size()}, ec, n);
    ASSERT_FALSE(ec) << ec.message();
    transfer(c, s);
    bool finished = false;
    std::array<std::uint8_t, 1024> buf;
    for (int i = 0; i < 16 && !finished; ++i) {
        s.read_early_data(buf, ec, n, finished);
        ASSERT_FALSE(ec) << ec.message();
        EXPECT_EQ(n, 0u);
        transfer(s, c);
        c.handshake(ec);
        ASSERT_FALSE(ec) << ec.message();
        transfer(c, s);
    }
    auto r = pump_handshake(c, s);
    ASSERT_FALSE(r.client) << r.client.message();
    ASSERT_FALSE(r.server) << r.server.message();
    EXPECT_FALSE(c.session_reused());
    EXPECT_FALSE(c.early_data_accepted());
    EXPECT_FALSE(s.early_data_accepted());
    // The application resends after a rejection; it arrives once.
    EXPECT_EQ(send(c, s, early), early);
}

TEST(Engine, ReusedTicketGetsNoEarlyData) {
    trust_only(shared_pki().ca_pem);
    auto co = client_opts("test.example");
    co.early_data = true;
    client_context cctx(co);
    server_context sctx(server_opts());
    ASSERT_NO_FATAL_FAILURE(obtain_ticket(cctx, sctx));
    ssl_session_ptr ticket = cctx.sessions().take();
    ASSERT_TRUE(ticket);
    std::string early = "replay";
    bool accepted[2] = {};
    for (bool& acc : accepted) {
        engine c = cctx.make_engine();
        // A fresh object per use, as a client that cached the ticket's bytes would have.
        unsigned char* der = nullptr;
        int len = i2d_SSL_SESSION(ticket.get(), &der);
        ASSERT_GT(len, 0);
        openssl_bytes_ptr der_owner(der);
        const unsigned char* p = der;
        ssl_session_ptr copy(d2i_SSL_SESSION(nullptr, &p, len));
        SSL_set_session(c.native_handle(), copy.get());
        engine s = sctx.make_engine();
        error_code ec;
        std::size_t n = 0;
        c.write_early_data({reinterpret_cast<const std::uint8_t*>(early.data()), early.size()}, ec,
                           n);
        ASSERT_FALSE(ec) << ec.message();
        transfer(c, s);
        bool finished = false;
        std::array<std::uint8_t, 1024> buf;
        for (int i = 0; i < 16 && !finished; ++i) {
            s.read_early_data(buf, ec, n, finished);
            ASSERT_FALSE(ec) << ec.message();
            transfer(s, c);
            c.handshake(ec);
            transfer(c, s);
        }
        ASSERT_FALSE(pump_handshake(c, s).client);
        acc = s.early_data_accepted();
    }
    EXPECT_TRUE(accepted[0]);
    EXPECT_FALSE(accepted[1]); // OpenSSL's anti-replay: a ticket's early data is accepted once
}

// Connections that start together each need a ticket of their own: a burst as large as the
// tickets the previous one left all resume (a cache of 16 sessions resumed 16 of them).
TEST(Engine, BurstOfConnectionsAllResume) {
    trust_only(shared_pki().ca_pem);
    client_context cctx(client_opts("test.example"));
    server_context sctx(server_opts());
    auto run_burst = [&](std::size_t n, bool resumed) {
        std::vector<engine> clients;
        for (std::size_t i = 0; i < n; ++i) {
            clients.push_back(cctx.make_engine()); // all take their session before any ends
        }
        for (auto& c : clients) {
            engine s = sctx.make_engine();
            auto r = pump_handshake(c, s);
            ASSERT_FALSE(r.client) << r.client.message();
            EXPECT_EQ(c.session_reused(), resumed);
            drain(c);
        }
    };
    ASSERT_NO_FATAL_FAILURE(run_burst(40, false));
    ASSERT_GE(cctx.sessions().size(), 40u);
    ASSERT_NO_FATAL_FAILURE(run_burst(40, true));
}

// With anti-replay every ticket kaminaris issues is an entry of its session cache until used or
// expired (two hours), and most are never used: a client keeps 256 and resumes with the newest,
// one that exits leaves all of its own. The cache holds default_session_cache_size of them
// (OpenSSL's own default, 20480, is about 22 MB); when full the oldest goes, the newest tickets
// still resume, and a client that comes back with an evicted one gets a full handshake.
TEST(Engine, ServerSessionCacheKeepsTheNewestTicketsWithinItsSize) {
    trust_only(shared_pki().ca_pem);
    server_context sctx(server_opts());
    EXPECT_EQ(SSL_CTX_sess_get_cache_size(sctx.native_handle()),
              static_cast<long>(server_context::default_session_cache_size));
    sctx.set_session_cache_size(16);

    client_context early(client_opts("test.example")); // its tickets become the oldest
    ASSERT_NO_FATAL_FAILURE(obtain_ticket(early, sctx));
    client_context later(client_opts("test.example"));
    for (int i = 0; i < 20; ++i) { // 20 full handshakes, two tickets each
        later.sessions().clear();
        ASSERT_NO_FATAL_FAILURE(obtain_ticket(later, sctx));
    }
    EXPECT_LE(SSL_CTX_sess_number(sctx.native_handle()), 16);

    auto resume = [&](client_context& cctx) {
        engine c = cctx.make_engine();
        engine s = sctx.make_engine();
        auto r = pump_handshake(c, s);
        EXPECT_FALSE(r.client) << r.client.message();
        EXPECT_FALSE(r.server) << r.server.message();
        EXPECT_EQ(send(c, s, "after"), "after");
        return c.session_reused();
    };
    EXPECT_TRUE(resume(later));
    EXPECT_FALSE(resume(early)); // evicted: a full handshake, not a failure
}

TEST(Engine, Tls12HandshakeAndResumption) {
    trust_only(shared_pki().ca_pem);
    client_context cctx(client_opts("test.example"));
    server_context sctx(server_opts());
    SSL_CTX_set_max_proto_version(sctx.native_handle(), TLS1_2_VERSION);
    for (int i = 0; i < 2; ++i) {
        engine c = cctx.make_engine();
        engine s = sctx.make_engine();
        auto r = pump_handshake(c, s);
        ASSERT_FALSE(r.client) << r.client.message();
        EXPECT_EQ(SSL_version(c.native_handle()), TLS1_2_VERSION);
        EXPECT_EQ(c.session_reused(), i == 1);
        EXPECT_EQ(send(c, s, "tls12"), "tls12");
    }
}

TEST(Engine, OldProtocolVersionsRefused) {
    trust_only(shared_pki().ca_pem);
    server_context sctx(server_opts());
    ssl_ctx_ptr old(SSL_CTX_new(TLS_client_method()));
    SSL_CTX_set_security_level(old.get(), 0);
    SSL_CTX_set_min_proto_version(old.get(), TLS1_VERSION);
    SSL_CTX_set_max_proto_version(old.get(), TLS1_1_VERSION);
    SSL_CTX_set_cipher_list(old.get(), "ALL:@SECLEVEL=0");
    engine c(old.get(), role::client);
    engine s = sctx.make_engine();
    auto r = pump_handshake(c, s);
    EXPECT_TRUE(r.server);
    EXPECT_TRUE(r.client);

    client_context cctx(client_opts("test.example"));
    EXPECT_EQ(SSL_CTX_get_min_proto_version(cctx.native_handle()), TLS1_2_VERSION);
    EXPECT_EQ(SSL_CTX_get_min_proto_version(sctx.native_handle()), TLS1_2_VERSION);
}

// A peer that received close_notify can still write: the tunnel's half-close.
void write_after_close_notify(int version) {
    trust_only(shared_pki().ca_pem);
    client_context cctx(client_opts("test.example"));
    server_context sctx(server_opts());
    SSL_CTX_set_max_proto_version(sctx.native_handle(), version);
    engine c = cctx.make_engine();
    engine s = sctx.make_engine();
    ASSERT_FALSE(pump_handshake(c, s).client);
    error_code ec;
    EXPECT_EQ(c.shutdown(ec), engine::want_output);
    ASSERT_FALSE(ec) << ec.message();
    transfer(c, s);
    std::array<std::uint8_t, 64> buf;
    std::size_t n = 0;
    s.read(buf, ec, n);
    EXPECT_EQ(ec, boost::asio::error::eof);
    // The client can no longer write, but the server can, and the client reads it.
    EXPECT_EQ(send(s, c, "still here"), "still here");
    c.write({reinterpret_cast<const std::uint8_t*>("x"), 1}, ec, n);
    EXPECT_TRUE(ec);
    // Then the server closes too.
    s.shutdown(ec);
    ASSERT_FALSE(ec) << ec.message();
    transfer(s, c);
    c.read(buf, ec, n);
    EXPECT_EQ(ec, boost::asio::error::eof);
}

TEST(Engine, WriteAfterReceivingCloseNotifyTls13) {
    write_after_close_notify(TLS1_3_VERSION);
}

TEST(Engine, WriteAfterReceivingCloseNotifyTls12) {
    write_after_close_notify(TLS1_2_VERSION);
}

TEST(Engine, ZeroCopyBuffers) {
    trust_only(shared_pki().ca_pem);
    client_context cctx(client_opts("test.example"));
    server_context sctx(server_opts());
    engine c = cctx.make_engine();
    engine s = sctx.make_engine();
    error_code ec;
    EXPECT_EQ(c.handshake(ec), engine::want_output_and_retry);
    EXPECT_EQ(c.output().size(), c.pending_output());
    auto out = c.output();
    auto in = s.input_space();
    ASSERT_GE(in.size(), out.size());
    EXPECT_EQ(in.size(), engine::default_buffer_size);
    std::copy(out.begin(), out.end(), in.begin());
    s.commit_input(out.size());
    c.consume_output(out.size());
    EXPECT_EQ(c.pending_output(), 0u);
    auto r = pump_handshake(c, s);
    EXPECT_FALSE(r.client) << r.client.message();
    EXPECT_FALSE(r.server) << r.server.message();
}

TEST(ByteQueue, AllocatesOnUseFreesWhenEmptyAndCompactsOnlyWhenAsked) {
    detail::byte_queue q(8);
    EXPECT_FALSE(q.allocated());
    auto space = q.space(true);
    ASSERT_EQ(space.size(), 8u);
    EXPECT_TRUE(q.allocated());
    std::memcpy(space.data(), "abcdefgh", 8);
    q.commit(8);
    q.consume(5); // "fgh" left at the end, 5 consumed bytes in front
    auto view = q.data();
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(view.data()), view.size()), "fgh");
    EXPECT_TRUE(q.space(false).empty()); // no moving: the view stays valid
    EXPECT_EQ(q.data().data(), view.data());
    space = q.space(true); // moved to the front
    ASSERT_EQ(space.size(), 5u);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(q.data().data()), q.size()), "fgh");
    EXPECT_NE(q.data().data(), view.data());
    q.release_if_empty();
    EXPECT_TRUE(q.allocated()); // not empty
    q.consume(3);
    EXPECT_EQ(q.space(false).size(), 8u); // emptied: starts again at the front
    q.release_if_empty();
    EXPECT_FALSE(q.allocated());
    EXPECT_EQ(q.size(), 0u);
}

TEST(Engine, IdleConnectionHoldsNoCiphertextBuffers) {
    engine_pair p;
    EXPECT_FALSE(p.c.holds_buffers()); // nothing is allocated before it is needed
    auto r = pump_handshake(p.c, p.s);
    ASSERT_FALSE(r.client) << r.client.message();
    ASSERT_FALSE(r.server) << r.server.message();
    EXPECT_EQ(send(p.c, p.s, "ping"), "ping");
    EXPECT_EQ(send(p.s, p.c, "pong"), "pong");
    drain(p.c); // session tickets
    // Output is freed as it is consumed; drained input when the connection goes idle.
    p.c.release_idle_buffers();
    p.s.release_idle_buffers();
    EXPECT_FALSE(p.c.holds_buffers());
    EXPECT_FALSE(p.s.holds_buffers());
    // A record that has only partly arrived is kept across release_idle_buffers().
    error_code ec;
    std::size_t n = 0;
    const std::array<std::uint8_t, 3> abc{'a', 'b', 'c'};
    p.c.write(abc, ec, n);
    ASSERT_FALSE(ec) << ec.message();
    auto out = p.c.output();
    ASSERT_GT(out.size(), 5u);
    ASSERT_EQ(p.s.put_input(out.first(5)), 5u);
    p.c.consume_output(5);
    p.s.release_idle_buffers();
    EXPECT_TRUE(p.s.holds_buffers());
    transfer(p.c, p.s);
    std::array<std::uint8_t, 16> got{};
    p.s.read(got, ec, n);
    ASSERT_FALSE(ec) << ec.message();
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(got.data()), n), "abc");
    p.s.release_idle_buffers();
    EXPECT_FALSE(p.s.holds_buffers());
}

TEST(Engine, InputFasterThanItIsReadFillsTheBufferWithoutLoss) {
    // Ciphertext is fed in pieces that never line up with records, faster than it is read, so
    // the input buffer fills up, with unread bytes behind consumed ones. Every byte must come
    // out in order.
    engine_pair p;
    auto r = pump_handshake(p.c, p.s);
    ASSERT_FALSE(r.client) << r.client.message();
    std::string text(600 * 1024, '\0');
    for (std::size_t i = 0; i < text.size(); ++i) {
        text[i] = static_cast<char>(i * 7 % 253);
    }
    auto data = std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(text.data()),
                                              text.size());
    std::string got;
    std::array<std::uint8_t, 5000> plain;
    int full = 0;
    while (got.size() < text.size()) {
        error_code ec;
        std::size_t n = 0;
        if (!data.empty()) {
            p.c.write(data, ec, n); // may be refused while the output buffer is full
            ASSERT_FALSE(ec) << ec.message();
            data = data.subspan(n);
        }
        auto out = p.c.output();
        auto piece = out.first(std::min<std::size_t>(out.size(), 7001));
        std::size_t put = p.s.put_input(piece);
        p.c.consume_output(put);
        if (put == piece.size() && !piece.empty()) {
            continue; // keep feeding until the input buffer is full
        }
        full += piece.empty() ? 0 : 1;
        p.s.read(plain, ec, n);
        ASSERT_FALSE(ec) << ec.message();
        got.append(reinterpret_cast<const char*>(plain.data()), n);
    }
    EXPECT_EQ(got, text);
    EXPECT_GT(full, 3); // the buffer did fill up, more than once
}

} // namespace
} // namespace kaminari::tls

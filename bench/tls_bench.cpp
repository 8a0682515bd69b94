// What a TLS handshake costs in OpenSSL alone, with kaminari's own contexts (tls::client_context
// with `insecure;sni=bench.local`, tls::server_context with `servername=bench.local`, as in the
// tunnel bench's tls setup) and engines, between two engines in memory: no socket, no relay,
// no event loop. Each iteration is one connection's TLS: the handshake, 64 bytes each way (which
// also delivers the server's session tickets to the client's cache), and both engines freed.
// This is the floor under kaminari's tls and wss modes without mux: whatever a relay does
// around it, a connection costs at least this much CPU, for both sides together.

#include "tls/pump.hpp"
#include "tls/self_signed_pair.hpp"

#include <kaminari/log.hpp>
#include <kaminari/options.hpp>
#include <kaminari/tls/context.hpp>

#include <benchmark/benchmark.h>

#include <string>

namespace {

using namespace kaminari;

tls_client_options client_options() {
    return test::insecure_client_options("bench.local");
}

tls_server_options server_options() {
    return test::self_signed_server_options("bench.local");
}

const std::string ping(64, 'p');

// One connection; false when it failed or (with `want_resumed`) was not a resumption.
bool connection(const tls::client_context& cctx, const tls::server_context& sctx,
                bool want_resumed) {
    tls::engine c = cctx.make_engine();
    tls::engine s = sctx.make_engine();
    const auto r = test::pump_handshake(c, s);
    if (r.client || r.server || c.session_reused() != want_resumed) {
        return false;
    }
    return test::send(s, c, ping) == ping && test::send(c, s, ping) == ping;
}

// Every handshake resumes the session the previous connection left in the client's cache
// (TLS 1.3 PSK with X25519), as a tunnel's connections after its first do.
void BM_resumed(benchmark::State& state) {
    const tls::client_context cctx(client_options());
    const tls::server_context sctx(server_options());
    if (!connection(cctx, sctx, false)) {
        state.SkipWithError("first handshake failed");
        return;
    }
    for (auto _ : state) {
        if (!connection(cctx, sctx, true)) {
            state.SkipWithError("a handshake failed or did not resume");
            return;
        }
    }
}
BENCHMARK(BM_resumed)->Unit(benchmark::kMicrosecond);

// Every handshake a full one: the client's cache is emptied before each (the server sends its
// certificate and signs the handshake with its P-256 key; the client decodes the certificate
// and checks that signature, but with `insecure` not the chain).
void BM_full(benchmark::State& state) {
    const tls::client_context cctx(client_options());
    const tls::server_context sctx(server_options());
    for (auto _ : state) {
        cctx.sessions().clear();
        if (!connection(cctx, sctx, false)) {
            state.SkipWithError("a handshake failed");
            return;
        }
    }
}
BENCHMARK(BM_full)->Unit(benchmark::kMicrosecond);

} // namespace

int main(int argc, char** argv) {
    kaminari::log::set_level(kaminari::log::level::error); // not `insecure`'s warning each time
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
        return 1;
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

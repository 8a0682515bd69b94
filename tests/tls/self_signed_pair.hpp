#pragma once
// Options for the simplest TLS pair: a server with a self-signed certificate for `name`
// (`servername=`) and a client that sends that name and does not verify (`sni=`, `insecure`),
// as the tunnel bench's tls setup runs them.
#include <kaminari/options.hpp>

#include <string>

namespace kaminari::test {

inline tls_client_options insecure_client_options(const std::string& name) {
    tls_client_options o;
    o.sni = name;
    o.insecure = true;
    return o;
}

inline tls_server_options self_signed_server_options(const std::string& name) {
    tls_server_options o;
    o.servername = name;
    return o;
}

} // namespace kaminari::test

#pragma once

// The certificate behind `servername=`: an in-memory ECDSA P-256 key and a self-signed X.509 v3
// certificate for one name, generated once at start-up and reused for every connection.

#include <kaminari/tls/openssl_ptr.hpp>

#include <string_view>

namespace kaminari::tls {

/// A certificate and its private key.
struct certificate_and_key {
    x509_ptr cert;
    evp_pkey_ptr key;
};

/// Generates a fresh ECDSA P-256 key and a self-signed certificate (SHA-256) for `name`:
/// subject and issuer CN = name (when it fits the 64-character limit of a CN), subjectAltName
/// DNS:name (IP:name for an IPv4/IPv6 literal), basicConstraints CA:FALSE, keyUsage
/// digitalSignature, extendedKeyUsage serverAuth, a random 128-bit serial, valid from one day
/// ago for 825 days. Throws startup_error if `name` is empty or OpenSSL fails.
certificate_and_key make_self_signed(std::string_view name);

} // namespace kaminari::tls

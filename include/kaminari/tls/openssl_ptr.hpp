#pragma once

// Ownership and errors for OpenSSL objects. Every OpenSSL handle in kaminari lives in one of
// the unique_ptr aliases below, so no other file calls a *_free function; every OpenSSL call
// whose failure matters goes through `call()`: ERR_clear_error(), the call, then the first
// queued error as an error_code in Asio's ssl category (whose message() is OpenSSL's reason
// string), as asio's ssl/impl/context.ipp does.

#include <boost/asio/ssl/error.hpp>
#include <boost/system/error_code.hpp>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

namespace kaminari::tls {

using error_code = boost::system::error_code;

namespace detail {

/// A stateless deleter calling `Free` (an OpenSSL `*_free` function).
template <auto Free>
struct free_with {
    template <class T>
    void operator()(T* p) const noexcept {
        Free(p);
    }
};

inline void free_x509_stack(STACK_OF(X509) * s) noexcept {
    sk_X509_pop_free(s, X509_free);
}
inline void free_openssl_bytes(unsigned char* p) noexcept {
    OPENSSL_free(p);
}

} // namespace detail

using ssl_ctx_ptr = std::unique_ptr<SSL_CTX, detail::free_with<&SSL_CTX_free>>;
using ssl_ptr = std::unique_ptr<SSL, detail::free_with<&SSL_free>>;
using ssl_session_ptr = std::unique_ptr<SSL_SESSION, detail::free_with<&SSL_SESSION_free>>;
using x509_ptr = std::unique_ptr<X509, detail::free_with<&X509_free>>;
using x509_name_ptr = std::unique_ptr<X509_NAME, detail::free_with<&X509_NAME_free>>;
using x509_extension_ptr = std::unique_ptr<X509_EXTENSION, detail::free_with<&X509_EXTENSION_free>>;
using x509_stack_ptr = std::unique_ptr<STACK_OF(X509), detail::free_with<&detail::free_x509_stack>>;
using evp_pkey_ptr = std::unique_ptr<EVP_PKEY, detail::free_with<&EVP_PKEY_free>>;
using evp_pkey_ctx_ptr = std::unique_ptr<EVP_PKEY_CTX, detail::free_with<&EVP_PKEY_CTX_free>>;
/// A BIO that is not chained (BIO_free, not BIO_free_all).
using bio_ptr = std::unique_ptr<BIO, detail::free_with<&BIO_free>>;
using bignum_ptr = std::unique_ptr<BIGNUM, detail::free_with<&BN_free>>;
using asn1_integer_ptr = std::unique_ptr<ASN1_INTEGER, detail::free_with<&ASN1_INTEGER_free>>;
using asn1_time_ptr = std::unique_ptr<ASN1_TIME, detail::free_with<&ASN1_TIME_free>>;
using ocsp_response_ptr = std::unique_ptr<OCSP_RESPONSE, detail::free_with<&OCSP_RESPONSE_free>>;
using ocsp_basicresp_ptr = std::unique_ptr<OCSP_BASICRESP, detail::free_with<&OCSP_BASICRESP_free>>;
using asn1_octet_string_ptr =
    std::unique_ptr<ASN1_OCTET_STRING, detail::free_with<&ASN1_OCTET_STRING_free>>;
using general_name_ptr = std::unique_ptr<GENERAL_NAME, detail::free_with<&GENERAL_NAME_free>>;
using general_names_ptr = std::unique_ptr<GENERAL_NAMES, detail::free_with<&GENERAL_NAMES_free>>;
using ocsp_certid_ptr = std::unique_ptr<OCSP_CERTID, detail::free_with<&OCSP_CERTID_free>>;
/// Memory from OPENSSL_malloc (handed to OpenSSL, which then frees it, or freed here).
using openssl_bytes_ptr =
    std::unique_ptr<unsigned char, detail::free_with<&detail::free_openssl_bytes>>;

/// Turns one packed OpenSSL error (ERR_get_error()) into an error_code in Asio's ssl category;
/// 0 gives a default (success) error_code.
inline error_code make_error(unsigned long err) noexcept {
    return error_code(static_cast<int>(err), boost::asio::error::get_ssl_category());
}

/// The oldest error on this thread's OpenSSL queue, then clears the queue. An empty queue
/// gives `asio::ssl::error::unspecified_system_error`, so a failure is never reported as success.
inline error_code take_error() noexcept {
    unsigned long err = ERR_get_error();
    ERR_clear_error();
    if (err == 0) {
        return boost::asio::ssl::error::unspecified_system_error;
    }
    return make_error(err);
}

namespace detail {
template <class R>
bool failed(const R& r) noexcept {
    if constexpr (std::is_pointer_v<R>) {
        return r == nullptr;
    } else {
        return r <= 0;
    }
}
} // namespace detail

/// Runs `f()` between ERR_clear_error() and ERR_get_error(). `f` returns an OpenSSL result: a
/// pointer (null = failure) or an int (<= 0 = failure, the common `1 on success` convention;
/// do not use it for calls like SSL_CTX_set_alpn_protos that return 0 on success). On failure
/// `ec` is set from the error queue (see take_error()); on success it is cleared.
template <class F>
auto call(error_code& ec, F&& f) {
    ERR_clear_error();
    auto result = std::forward<F>(f)();
    if (detail::failed(result)) {
        ec = take_error();
    } else {
        ec = {};
    }
    return result;
}

/// The category of certificate verification failures: the value is an X509_V_ERR_* code and
/// message() is `certificate verify failed: <X509_verify_cert_error_string>` (e.g. `unable to
/// get local issuer certificate`, `hostname mismatch`).
const boost::system::error_category& verify_category() noexcept;

/// An error_code in verify_category() for an X509_V_ERR_* value.
inline error_code make_verify_error(long x509_v_err) noexcept {
    return error_code(static_cast<int>(x509_v_err), verify_category());
}

} // namespace kaminari::tls

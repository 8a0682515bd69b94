#include "kaminari/tls/openssl_ptr.hpp"

#include <openssl/x509.h>

#include <string>

namespace kaminari::tls {

namespace {

class verify_category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "kaminari.tls.verify"; }

    std::string message(int value) const override {
        std::string text = "certificate verify failed: ";
        text += X509_verify_cert_error_string(value);
        return text;
    }
};

} // namespace

const boost::system::error_category& verify_category() noexcept {
    static const verify_category_impl instance;
    return instance;
}

} // namespace kaminari::tls

/* Tries an SSL_CTX setting on an unchanged kaminaric/kaminaris build, for handshake_cost.py:
 * an LD_PRELOAD library whose SSL_new() applies the settings named by environment variables
 * to the SSL_CTX once (the first SSL_new of each SSL_CTX in a row), then calls the real one.
 *
 *   cc -shared -fPIC -O2 -o /tmp/ssl_ctx_tweaks.so bench/ssl_ctx_tweaks.c -ldl -lssl
 *   LD_PRELOAD=/tmp/ssl_ctx_tweaks.so HS_TICKETS=1 python3 bench/handshake_cost.py build-rel
 *
 *   HS_TICKETS=n        SSL_CTX_set_num_tickets(ctx, n) (server)
 *   HS_GROUPS=list      SSL_CTX_set1_groups_list(ctx, list)
 *   HS_CIPHERS=list     SSL_CTX_set_cipher_list(ctx, list) (TLS 1.2 suites)
 *   HS_SKIPVERIFY=1     SSL_CTX_set_cert_verify_callback: no chain building (client)
 *   HS_NORELEASE=1      SSL_CTX_clear_mode(ctx, SSL_MODE_RELEASE_BUFFERS)
 *
 * Both relays get the settings; each applies to one side only or is the same on both. A
 * measuring aid only: kaminari runs one SSL_CTX per process, which is what "once" relies on. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

static int skip_verify(X509_STORE_CTX *store, void *arg) {
    (void)store;
    (void)arg;
    return 1;
}

SSL *SSL_new(SSL_CTX *ctx) {
    static SSL *(*real)(SSL_CTX *);
    static SSL_CTX *done;
    if (real == NULL) {
        real = (SSL * (*)(SSL_CTX *)) dlsym(RTLD_NEXT, "SSL_new");
    }
    if (done != ctx) {
        const char *v;
        done = ctx;
        if ((v = getenv("HS_TICKETS")) != NULL) {
            SSL_CTX_set_num_tickets(ctx, (size_t)atoi(v));
        }
        if ((v = getenv("HS_GROUPS")) != NULL) {
            SSL_CTX_set1_groups_list(ctx, v);
        }
        if ((v = getenv("HS_CIPHERS")) != NULL) {
            SSL_CTX_set_cipher_list(ctx, v);
        }
        if (getenv("HS_SKIPVERIFY") != NULL) {
            SSL_CTX_set_cert_verify_callback(ctx, skip_verify, NULL);
        }
        if (getenv("HS_NORELEASE") != NULL) {
            SSL_CTX_clear_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
        }
    }
    return real(ctx);
}

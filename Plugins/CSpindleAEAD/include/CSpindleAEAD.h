// BoringSSL's EVP_AEAD interface, as linked into every program that uses swift-crypto.
//
// swift-crypto builds BoringSSL with every symbol prefixed `CCryptoBoringSSL_` and does not
// export its headers as a product, so SpindleTCP declares the six functions it uses here.
// They let a connection keep one AEAD context per direction (the key schedule done once)
// and seal records in place: swift-crypto's AES.GCM API builds a context and three Data
// values per call (docs/benchmarks.md, "Encrypted records"). The declarations match
// BoringSSL's include/openssl/aead.h; the opaque struct types stand in for EVP_AEAD and
// EVP_AEAD_CTX, which are only ever used through pointers.
#ifndef C_SPINDLE_AEAD_H
#define C_SPINDLE_AEAD_H

#include <stddef.h>
#include <stdint.h>

typedef struct spindle_evp_aead_st spindle_evp_aead;
typedef struct spindle_evp_aead_ctx_st spindle_evp_aead_ctx;

const spindle_evp_aead *CCryptoBoringSSL_EVP_aead_aes_256_gcm(void);

spindle_evp_aead_ctx *CCryptoBoringSSL_EVP_AEAD_CTX_new(const spindle_evp_aead *aead, const uint8_t *key,
                                                         size_t key_len, size_t tag_len);

void CCryptoBoringSSL_EVP_AEAD_CTX_free(spindle_evp_aead_ctx *ctx);

int CCryptoBoringSSL_EVP_AEAD_CTX_seal(const spindle_evp_aead_ctx *ctx, uint8_t *out, size_t *out_len,
                                       size_t max_out_len, const uint8_t *nonce, size_t nonce_len,
                                       const uint8_t *in, size_t in_len, const uint8_t *ad, size_t ad_len);

int CCryptoBoringSSL_EVP_AEAD_CTX_open(const spindle_evp_aead_ctx *ctx, uint8_t *out, size_t *out_len,
                                       size_t max_out_len, const uint8_t *nonce, size_t nonce_len,
                                       const uint8_t *in, size_t in_len, const uint8_t *ad, size_t ad_len);

// Clears BoringSSL's thread-local error queue after a failed open (a forged record is an
// expected event, not an error to keep).
void CCryptoBoringSSL_ERR_clear_error(void);

#endif

/* kaal: SHA-256 (FIPS 180-4), pure C, no allocation. */
#ifndef KAAL_SHA256_H
#define KAAL_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct kaal_sha256 {
    uint32_t h[8];
    uint64_t total;
    uint8_t buf[64];
    size_t used;
} kaal_sha256;

void kaal_sha256_init(kaal_sha256 *s);
void kaal_sha256_update(kaal_sha256 *s, const void *data, size_t len);
void kaal_sha256_final(kaal_sha256 *s, uint8_t out[32]);

#endif

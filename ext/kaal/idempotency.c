#include "idempotency.h"

#include <stdio.h>

#include "sha256.h"

void kaal_idempotency_key(const char *ns, size_t ns_len, const char *key, size_t key_len,
                          int64_t fire_epoch, char out[KAAL_IDEMPOTENCY_KEY_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    char num[32];
    uint8_t digest[32];
    kaal_sha256 s;
    int n, i;

    kaal_sha256_init(&s);
    n = snprintf(num, sizeof num, "kaal:v1:%zu:", ns_len);
    kaal_sha256_update(&s, num, (size_t)n);
    kaal_sha256_update(&s, ns, ns_len);
    n = snprintf(num, sizeof num, ":%zu:", key_len);
    kaal_sha256_update(&s, num, (size_t)n);
    kaal_sha256_update(&s, key, key_len);
    n = snprintf(num, sizeof num, ":%lld", (long long)fire_epoch);
    kaal_sha256_update(&s, num, (size_t)n);
    kaal_sha256_final(&s, digest);
    for (i = 0; i < 32; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[KAAL_IDEMPOTENCY_KEY_LEN] = '\0';
}

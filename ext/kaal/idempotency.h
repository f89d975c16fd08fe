/* kaal: the idempotency key (docs/architecture.md, "The idempotency key").
 * key = lowercase hex SHA-256 of
 *   "kaal:v1:" + len(ns) + ":" + ns + ":" + len(key) + ":" + key + ":" + fire_epoch
 * with byte lengths and fire_epoch in decimal whole seconds. */
#ifndef KAAL_IDEMPOTENCY_H
#define KAAL_IDEMPOTENCY_H

#include <stddef.h>
#include <stdint.h>

#define KAAL_IDEMPOTENCY_KEY_LEN 64

/* Writes 64 hex characters and a NUL into out. */
void kaal_idempotency_key(const char *ns, size_t ns_len, const char *key, size_t key_len,
                          int64_t fire_epoch, char out[KAAL_IDEMPOTENCY_KEY_LEN + 1]);

#endif

/* kaal: the Redis backend's transport. Pure C, runs without the GVL.
 *
 * kaal owns the socket (TCP, Unix, or TLS over TCP with OpenSSL's libssl)
 * and uses hiredis only for the protocol: redisFormatCommandArgv writes
 * commands, a redisReader parses replies. The socket is non-blocking and
 * every wait is kaal_wait (bounded by a deadline, ended at once by an
 * interrupt from Ruby), for TLS too: SSL_connect, SSL_read and SSL_write are
 * retried after a wait for what OpenSSL asked (WANT_READ / WANT_WRITE).
 *
 * A failed, timed-out or interrupted exchange leaves the stream in an unknown
 * state (a late reply may still come): the caller closes the connection. */
#ifndef KAAL_REDIS_IO_H
#define KAAL_REDIS_IO_H

#include <hiredis/hiredis.h>

#include "backend.h"

/* TLS settings; verify is one of the KAAL_TLS_VERIFY_* levels. */
enum {
    KAAL_TLS_VERIFY_FULL = 0, /* the chain and the host name (the default) */
    KAAL_TLS_VERIFY_CA,       /* the chain only */
    KAAL_TLS_VERIFY_NONE      /* nothing: encryption without authentication */
};

typedef struct kaal_tls_config {
    const char *ca_file;     /* PEM file of trusted CAs (NULL: the system's) */
    const char *ca_path;     /* directory of hashed CA certificates */
    const char *cert;        /* client certificate: a PEM file path or PEM text */
    const char *key;         /* its private key: a PEM file path or PEM text */
    const char *server_name; /* name to verify and send as SNI (NULL: the host) */
    int verify;
} kaal_tls_config;

/* Where to connect: a Unix socket path, or host and port (with TLS when tls
 * is not NULL). */
typedef struct kaal_redis_addr {
    const char *socket;
    const char *host;
    int port;
    const kaal_tls_config *tls;
} kaal_redis_addr;

typedef struct kaal_redis_io kaal_redis_io;

/* 1 when this build can speak TLS. */
int kaal_redis_tls_available(void);

/* "unix:<path>" or "<host>:<port>" into out (for messages). */
void kaal_redis_addr_text(const kaal_redis_addr *a, char *out, size_t n);

/* Connects to a (TCP keep-alive on; TLS handshake and verification when
 * a->tls), all within timeout_ms. KAAL_OK and *out, or an error naming the
 * address: KAAL_ECONNECT ("redis: cannot connect to <addr>: ...",
 * "redis: TLS with <addr> failed: ..."), KAAL_ECONFIG for unusable TLS
 * files, KAAL_EINTERRUPTED, KAAL_ENOMEM. */
int kaal_redis_io_open(kaal_backend *b, const kaal_redis_addr *a, int timeout_ms,
                       kaal_redis_io **out, kaal_error *err);

/* Queues one command (sent by the next kaal_redis_io_reply). KAAL_OK or
 * KAAL_ENOMEM. */
int kaal_redis_io_append(kaal_redis_io *io, int argc, const char **argv, const size_t *lens);

/* Sends what is queued, then reads the next reply into *out (free it with
 * freeReplyObject). KAAL_OK, or KAAL_ECONNECT ("redis: <what>: ..."),
 * KAAL_EINTERRUPTED: the connection is then unusable. */
int kaal_redis_io_reply(kaal_backend *b, kaal_redis_io *io, int64_t deadline_ms, redisReply **out,
                        const char *what, kaal_error *err);

/* Ends the connection and frees it (NULL is ignored). */
void kaal_redis_io_close(kaal_redis_io *io);

/* In a forked child: frees the connection without sending anything on the
 * socket the parent still uses (no TLS close_notify). */
void kaal_redis_io_discard(kaal_redis_io *io);

#endif

/* kaal: the Redis backend's transport (see redis_io.h). */
#include "backend.h"

#ifdef KAAL_HAVE_REDIS

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifdef KAAL_HAVE_OPENSSL
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#endif

#include "redis_io.h"

/* Bytes read from the socket at a time. */
#define READ_CHUNK 16384

#ifdef KAAL_HAVE_OPENSSL
static int tls_write(SSL *ssl, const char *p, int n);
#endif

struct kaal_redis_io {
    int fd;
    redisReader *reader;
    kaal_buf out;   /* queued commands, out_off bytes of them already sent */
    size_t out_off;
#ifdef KAAL_HAVE_OPENSSL
    SSL *ssl;
#endif
};

int kaal_redis_tls_available(void)
{
#ifdef KAAL_HAVE_OPENSSL
    return 1;
#else
    return 0;
#endif
}

void kaal_redis_addr_text(const kaal_redis_addr *a, char *out, size_t n)
{
    if (a->socket && *a->socket) {
        snprintf(out, n, "unix:%s", a->socket);
    } else if (strchr(a->host, ':')) {
        snprintf(out, n, "[%s]:%d", a->host, a->port);
    } else {
        snprintf(out, n, "%s:%d", a->host, a->port);
    }
}

static kaal_redis_io *io_new(int fd)
{
    kaal_redis_io *io = calloc(1, sizeof *io);
    if (!io) return NULL;
    io->reader = redisReaderCreate();
    if (!io->reader) {
        free(io);
        return NULL;
    }
    io->fd = fd;
    return io;
}

static void io_free(kaal_redis_io *io)
{
#ifdef KAAL_HAVE_OPENSSL
    if (io->ssl) SSL_free(io->ssl);
#endif
    if (io->fd >= 0) close(io->fd);
    redisReaderFree(io->reader);
    free(io->out.p);
    free(io);
}

void kaal_redis_io_close(kaal_redis_io *io)
{
    if (!io) return;
#ifdef KAAL_HAVE_OPENSSL
    /* One try at close_notify; the socket is non-blocking, nothing waits. */
    if (io->ssl) {
        ERR_clear_error();
        tls_write(io->ssl, NULL, 0);
        ERR_clear_error();
    }
#endif
    io_free(io);
}

void kaal_redis_io_discard(kaal_redis_io *io)
{
    /* SSL_free sends nothing; closing our copy of the descriptor leaves the
     * parent's connection as it is. */
    if (io) io_free(io);
}

/* ------------------------------------------------------------------ */
/* Connecting                                                          */

static int set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

/* Waits for a non-blocking connect on fd to finish: KAAL_OK, or
 * KAAL_ECONNECT with *soerr the reason (0: out of time), or
 * KAAL_EINTERRUPTED. */
static int await_connect(kaal_backend *b, int fd, int64_t deadline, int *soerr, kaal_error *err)
{
    socklen_t len = sizeof *soerr;
    int rc = kaal_wait(b, fd, POLLOUT, deadline, NULL, "connect", err);
    *soerr = 0;
    if (rc == KAAL_EINTERRUPTED) return rc;
    if (rc != KAAL_OK) return KAAL_ECONNECT;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, soerr, &len) != 0) *soerr = errno;
    return *soerr == 0 ? KAAL_OK : KAAL_ECONNECT;
}

/* socket() and connect() on one address: the descriptor, or -1 with *e set
 * (errno; 0 when out of time) and *rc KAAL_EINTERRUPTED when interrupted. */
static int connect_one(kaal_backend *b, int family, const struct sockaddr *sa, socklen_t salen,
                       int64_t deadline, int *e, int *rc, kaal_error *err)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    *rc = KAAL_OK;
    if (fd < 0 || !set_nonblocking(fd)) {
        *e = errno;
        if (fd >= 0) close(fd);
        return -1;
    }
    if (connect(fd, sa, salen) == 0) return fd;
    if (errno != EINPROGRESS) {
        *e = errno;
        close(fd);
        return -1;
    }
    if (await_connect(b, fd, deadline, e, err) == KAAL_OK) return fd;
    if (kaal_backend_interrupted(b)) *rc = KAAL_EINTERRUPTED;
    close(fd);
    return -1;
}

/* The error of a connect that failed with errno e (0: out of time). */
static int connect_failed(const char *where, int e, int timeout_ms, kaal_error *err)
{
    if (e == 0) {
        return kaal_error_set(err, KAAL_ECONNECT, NULL, -1,
                              "redis: cannot connect to %s: timed out after %d ms", where, timeout_ms);
    }
    return kaal_error_set(err, KAAL_ECONNECT, NULL, -1, "redis: cannot connect to %s: %s", where,
                          strerror(e));
}

static int open_unix(kaal_backend *b, const char *path, int64_t deadline, int timeout_ms, int *fd,
                     const char *where, kaal_error *err)
{
    struct sockaddr_un sa;
    int rc, e = 0;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) return connect_failed(where, ENAMETOOLONG, timeout_ms, err);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    *fd = connect_one(b, AF_UNIX, (struct sockaddr *)&sa, sizeof sa, deadline, &e, &rc, err);
    if (*fd >= 0) return KAAL_OK;
    if (rc != KAAL_OK) return kaal_interrupted_error(b, "connect", err);
    return connect_failed(where, e, timeout_ms, err);
}

/* Every address of host:port in turn, until one connects. */
static int open_tcp(kaal_backend *b, const char *host, int port, int64_t deadline, int timeout_ms,
                    int *fd, const char *where, kaal_error *err)
{
    struct addrinfo hints, *res = NULL, *ai;
    char service[16];
    int gai, rc = KAAL_OK, e = ECONNREFUSED, one = 1;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(service, sizeof service, "%d", port);
    gai = getaddrinfo(host, service, &hints, &res);
    if (gai != 0) {
        return kaal_error_set(err, KAAL_ECONNECT, NULL, -1, "redis: cannot connect to %s: %s", where,
                              gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
    }
    *fd = -1;
    for (ai = res; ai && *fd < 0; ai = ai->ai_next) {
        *fd = connect_one(b, ai->ai_family, ai->ai_addr, ai->ai_addrlen, deadline, &e, &rc, err);
        if (rc != KAAL_OK || (*fd < 0 && e == 0)) break; /* interrupted, or out of time */
    }
    freeaddrinfo(res);
    if (rc != KAAL_OK) return kaal_interrupted_error(b, "connect", err);
    if (*fd < 0) return connect_failed(where, e, timeout_ms, err);
    setsockopt(*fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(*fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    return KAAL_OK;
}

/* ------------------------------------------------------------------ */
/* TLS                                                                 */

#ifdef KAAL_HAVE_OPENSSL

/* The text of OpenSSL's oldest queued error (or `fallback`). */
static const char *ssl_reason(char *buf, size_t n, const char *fallback)
{
    unsigned long e = ERR_get_error();
    if (!e) return fallback;
    ERR_error_string_n(e, buf, n);
    return buf;
}

static int is_pem(const char *s) { return strncmp(s, "-----BEGIN", 10) == 0; }

static int tls_files_error(const char *option, const char *value, kaal_error *err)
{
    char why[200];
    const char *shown = value && is_pem(value) ? "(PEM text)" : value;
    return kaal_error_set(err, KAAL_ECONFIG, option, -1, "redis: ssl_params %s %s%.200s%s: %s", option,
                          is_pem(value) ? "" : "\"", shown, is_pem(value) ? "" : "\"",
                          ssl_reason(why, sizeof why, "unusable"));
}

/* Loads the client certificate (is_key 0) or its private key (is_key 1)
 * from v: a file path, or PEM text (what redis-rb's OpenSSL objects turn
 * into). 1 when loaded. */
static int use_identity(SSL_CTX *ctx, const char *v, int is_key)
{
    BIO *bio;
    int ok = 0;
    if (!is_pem(v)) {
        return is_key ? SSL_CTX_use_PrivateKey_file(ctx, v, SSL_FILETYPE_PEM) == 1
                      : SSL_CTX_use_certificate_chain_file(ctx, v) == 1;
    }
    bio = BIO_new_mem_buf(v, -1);
    if (bio && is_key) {
        EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
        ok = k && SSL_CTX_use_PrivateKey(ctx, k) == 1;
        EVP_PKEY_free(k);
    } else if (bio) {
        X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        ok = x && SSL_CTX_use_certificate(ctx, x) == 1;
        X509_free(x);
    }
    BIO_free(bio);
    return ok;
}

/* Certificate and key, when given. */
static int tls_client_identity(SSL_CTX *ctx, const kaal_tls_config *t, kaal_error *err)
{
    if (t->cert && !use_identity(ctx, t->cert, 0)) return tls_files_error("cert", t->cert, err);
    if (t->key && (!use_identity(ctx, t->key, 1) || (t->cert && SSL_CTX_check_private_key(ctx) != 1))) {
        return tls_files_error("key", t->key, err);
    }
    return KAAL_OK;
}

static int tls_context(const kaal_tls_config *t, SSL_CTX **out, kaal_error *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    int rc = KAAL_OK;
    *out = NULL;
    if (!ctx) return kaal_error_set(err, KAAL_ENOMEM, NULL, -1, "redis: cannot set up TLS");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (t->verify != KAAL_TLS_VERIFY_NONE) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (t->ca_file || t->ca_path) {
            if (SSL_CTX_load_verify_locations(ctx, t->ca_file, t->ca_path) != 1) {
                rc = tls_files_error(t->ca_file ? "ca_file" : "ca_path", t->ca_file ? t->ca_file : t->ca_path,
                                     err);
            }
        } else {
            SSL_CTX_set_default_verify_paths(ctx);
        }
    }
    if (rc == KAAL_OK) rc = tls_client_identity(ctx, t, err);
    if (rc != KAAL_OK) {
        SSL_CTX_free(ctx);
        return rc;
    }
    *out = ctx;
    return KAAL_OK;
}

static int is_ip_address(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* Waits for what OpenSSL asked for after `ret` from an SSL call: KAAL_OK to
 * retry it; otherwise the call failed (*code: SSL_get_error). */
static int tls_wait(kaal_backend *b, kaal_redis_io *io, int ret, int64_t deadline, int *code,
                    const char *what, kaal_error *err)
{
    *code = SSL_get_error(io->ssl, ret);
    if (*code == SSL_ERROR_WANT_READ) return kaal_wait(b, io->fd, POLLIN, deadline, NULL, what, err);
    if (*code == SSL_ERROR_WANT_WRITE) return kaal_wait(b, io->fd, POLLOUT, deadline, NULL, what, err);
    return KAAL_ECONNECT;
}

static int tls_handshake_failed(kaal_redis_io *io, int code, const char *where, kaal_error *err)
{
    char why[256];
    long v = SSL_get_verify_result(io->ssl);
    const char *reason;
    if (v != X509_V_OK) {
        snprintf(why, sizeof why, "certificate verify failed: %s", X509_verify_cert_error_string(v));
        reason = why;
    } else if (code == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        reason = errno ? strerror(errno) : "the server closed the connection (is it a TLS port?)";
    } else {
        reason = ssl_reason(why, sizeof why, "handshake failed");
    }
    return kaal_error_set(err, KAAL_ECONNECT, NULL, -1, "redis: TLS with %s failed: %s", where, reason);
}

static int tls_start(kaal_backend *b, kaal_redis_io *io, const kaal_redis_addr *a, int64_t deadline,
                     const char *where, kaal_error *err)
{
    const kaal_tls_config *t = a->tls;
    const char *name = t->server_name && *t->server_name ? t->server_name : a->host;
    SSL_CTX *ctx;
    int rc = tls_context(t, &ctx, err);
    if (rc != KAAL_OK) return rc;
    io->ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the SSL holds its own reference */
    if (!io->ssl || SSL_set_fd(io->ssl, io->fd) != 1) {
        return kaal_error_set(err, KAAL_ENOMEM, NULL, -1, "redis: cannot set up TLS");
    }
    if (!is_ip_address(name)) SSL_set_tlsext_host_name(io->ssl, name);
    if (t->verify == KAAL_TLS_VERIFY_FULL) {
        int ok = is_ip_address(name) ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(io->ssl), name)
                                     : SSL_set1_host(io->ssl, name);
        if (ok != 1) {
            return kaal_error_set(err, KAAL_ECONFIG, "hostname", -1,
                                  "redis: cannot verify the server name \"%.200s\"", name);
        }
    }
    for (;;) {
        int ret, code;
        ERR_clear_error();
        errno = 0;
        ret = SSL_connect(io->ssl);
        if (ret == 1) return KAAL_OK;
        rc = tls_wait(b, io, ret, deadline, &code, "TLS handshake", err);
        if (rc == KAAL_ECONNECT && code != SSL_ERROR_WANT_READ && code != SSL_ERROR_WANT_WRITE) {
            return tls_handshake_failed(io, code, where, err);
        }
        if (rc != KAAL_OK) return rc;
    }
}

#endif /* KAAL_HAVE_OPENSSL */

int kaal_redis_io_open(kaal_backend *b, const kaal_redis_addr *a, int timeout_ms,
                       kaal_redis_io **out, kaal_error *err)
{
    int64_t deadline = kaal_mono_ms() + timeout_ms;
    char where[300];
    int fd = -1, rc;
    kaal_redis_io *io;

    *out = NULL;
    kaal_redis_addr_text(a, where, sizeof where);
#ifndef KAAL_HAVE_OPENSSL
    if (a->tls) {
        return kaal_error_set(err, KAAL_ECONFIG, "url", -1,
                              "redis: this build has no TLS support (install libssl-dev and reinstall kaal)");
    }
#endif
    if (a->socket && *a->socket) {
        rc = open_unix(b, a->socket, deadline, timeout_ms, &fd, where, err);
    } else {
        rc = open_tcp(b, a->host, a->port, deadline, timeout_ms, &fd, where, err);
    }
    if (rc != KAAL_OK) return rc;
    if (!(io = io_new(fd))) {
        close(fd);
        return kaal_error_set(err, KAAL_ENOMEM, NULL, -1, "redis: out of memory");
    }
#ifdef KAAL_HAVE_OPENSSL
    if (a->tls && (rc = tls_start(b, io, a, deadline, where, err)) != KAAL_OK) {
        io_free(io);
        if (rc == KAAL_ECONNECT && kaal_mono_ms() >= deadline && !kaal_backend_interrupted(b)) {
            return kaal_error_set(err, KAAL_ECONNECT, NULL, -1,
                                  "redis: TLS with %s failed: no answer to the handshake within %d ms "
                                  "(is it a TLS port?)", where, timeout_ms);
        }
        return rc;
    }
#endif
    *out = io;
    return KAAL_OK;
}

/* ------------------------------------------------------------------ */
/* Commands and replies                                                */

int kaal_redis_io_append(kaal_redis_io *io, int argc, const char **argv, const size_t *lens)
{
    char *cmd = NULL;
    int n = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (n < 0 || !cmd) return KAAL_ENOMEM;
    if (io->out.len == io->out_off) {
        /* Nothing queued: take the formatted command as the buffer (its
         * cap counts no room for a NUL, so the next append reallocates). */
        free(io->out.p);
        io->out.p = cmd;
        io->out.len = io->out.cap = (size_t)n;
        io->out_off = 0;
        return KAAL_OK;
    }
    kaal_buf_put(&io->out, cmd, (size_t)n);
    free(cmd);
    if (io->out.oom) {
        io->out.oom = 0; /* what was queued before is still there */
        return KAAL_ENOMEM;
    }
    return KAAL_OK;
}

static int lost(const char *what, const char *detail, kaal_error *err)
{
    return kaal_error_set(err, KAAL_ECONNECT, NULL, -1, "redis: %s: %s", what, detail);
}

#ifdef KAAL_HAVE_OPENSSL
/* SSL_write (or SSL_shutdown, with p NULL) on a socket the server closed
 * raises SIGPIPE (OpenSSL writes with write(2), not send with
 * MSG_NOSIGNAL), which kills a process that has not set a handler (Ruby has
 * one; a C embedder may not). The signal is blocked in this thread around
 * the call, and one it raised is taken before unblocking; the write then
 * fails with EPIPE as any lost connection does. */
static int tls_write(SSL *ssl, const char *p, int n)
{
    sigset_t pipe_only, old, pending;
    int ret, raised;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    sigpending(&pending);
    raised = sigismember(&pending, SIGPIPE); /* one already pending is not ours */
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    ret = p ? SSL_write(ssl, p, n) : SSL_shutdown(ssl);
    if (!raised) {
        struct timespec none = {0, 0};
        int saved = errno;
        sigpending(&pending);
        if (sigismember(&pending, SIGPIPE)) sigtimedwait(&pipe_only, NULL, &none);
        errno = saved;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ret;
}
#endif

/* Sends everything queued. */
static int flush_out(kaal_backend *b, kaal_redis_io *io, int64_t deadline, const char *what,
                     kaal_error *err)
{
    while (io->out_off < io->out.len) {
        const char *p = io->out.p + io->out_off;
        size_t left = io->out.len - io->out_off;
        ssize_t n;
        int rc;
#ifdef KAAL_HAVE_OPENSSL
        if (io->ssl) {
            int code;
            ERR_clear_error();
            n = tls_write(io->ssl, p, left > 1 << 30 ? 1 << 30 : (int)left);
            if (n > 0) {
                io->out_off += (size_t)n;
                continue;
            }
            rc = tls_wait(b, io, (int)n, deadline, &code, what, err);
            if (rc == KAAL_ECONNECT && code != SSL_ERROR_WANT_READ && code != SSL_ERROR_WANT_WRITE) {
                char why[200];
                return lost(what, ssl_reason(why, sizeof why, "connection lost"), err);
            }
            if (rc != KAAL_OK) return rc;
            continue;
        }
#endif
        n = send(io->fd, p, left, MSG_NOSIGNAL);
        if (n >= 0) {
            io->out_off += (size_t)n;
            continue;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return lost(what, strerror(errno), err);
        if ((rc = kaal_wait(b, io->fd, POLLOUT, deadline, NULL, what, err)) != KAAL_OK) return rc;
    }
    io->out_off = io->out.len = 0;
    return KAAL_OK;
}

/* Reads what has arrived into the reader, waiting for it when nothing has. */
static int fill_reader(kaal_backend *b, kaal_redis_io *io, int64_t deadline, const char *what,
                       kaal_error *err)
{
    char chunk[READ_CHUNK];
    for (;;) {
        ssize_t n;
        int rc;
#ifdef KAAL_HAVE_OPENSSL
        if (io->ssl) {
            int code;
            ERR_clear_error();
            errno = 0;
            n = SSL_read(io->ssl, chunk, sizeof chunk);
            if (n <= 0) {
                rc = tls_wait(b, io, (int)n, deadline, &code, what, err);
                if (rc == KAAL_ECONNECT && code != SSL_ERROR_WANT_READ && code != SSL_ERROR_WANT_WRITE) {
                    char why[200];
                    if (code == SSL_ERROR_ZERO_RETURN || (code == SSL_ERROR_SYSCALL && errno == 0)) {
                        return lost(what, "connection lost", err);
                    }
                    return lost(what, ssl_reason(why, sizeof why, errno ? strerror(errno) : "connection lost"),
                                err);
                }
                if (rc != KAAL_OK) return rc;
                continue;
            }
        } else
#endif
        {
            /* Wait first: a reply is rarely there the moment its command
             * left (and poll returns at once when it is). */
            if ((rc = kaal_wait(b, io->fd, POLLIN, deadline, NULL, what, err)) != KAAL_OK) return rc;
            n = recv(io->fd, chunk, sizeof chunk, 0);
            if (n == 0) return lost(what, "connection lost", err);
            if (n < 0) {
                if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
                return lost(what, strerror(errno), err);
            }
        }
        if (redisReaderFeed(io->reader, chunk, (size_t)n) != REDIS_OK) {
            return lost(what, "out of memory", err);
        }
        return KAAL_OK;
    }
}

int kaal_redis_io_reply(kaal_backend *b, kaal_redis_io *io, int64_t deadline_ms, redisReply **out,
                        const char *what, kaal_error *err)
{
    void *rep = NULL;
    int rc;
    *out = NULL;
    if (io->out_off < io->out.len && (rc = flush_out(b, io, deadline_ms, what, err)) != KAAL_OK) {
        return rc;
    }
    for (;;) {
        if (redisReaderGetReply(io->reader, &rep) != REDIS_OK) {
            char detail[160];
            snprintf(detail, sizeof detail, "protocol error: %s", io->reader->errstr);
            return lost(what, detail, err);
        }
        if (rep) {
            *out = rep;
            return KAAL_OK;
        }
        if ((rc = fill_reader(b, io, deadline_ms, what, err)) != KAAL_OK) return rc;
    }
}

#endif /* KAAL_HAVE_REDIS */

/* Fuzz target "conn_params": the text parsers of connection parameters
 * and server greetings in C (the URL itself is split in Ruby): the Redis
 * database number and Sentinel list, the PostgreSQL socket path (".../
 * .s.PGSQL.<port>"), the MariaDB/MySQL server version string, and the
 * VARCHAR(255) check every SQL backend applies to keys and nodes. The first
 * byte picks the parser; the rest is the text. */
#include "fuzz.h"
#include "glue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s;
    if (size < 1) return 0;
    s = kaal_strndup((const char *)data + 1, size - 1);
    FUZZ_CHECK(s != NULL, "strndup");
    switch (data[0] % 5) {
    case 0: {
        long db = -1;
        if (fuzz_redis_parse_db(s, &db)) FUZZ_CHECK(db >= 0 && db <= 1000000, "db %ld", db);
        break;
    }
    case 1: {
        size_t i, n = fuzz_redis_sentinel_count(s);
        FUZZ_CHECK(n >= 1, "no sentinels counted");
        for (i = 0; i < n + 1 && i < 64; i++) {
            char host[256];
            int port = -1;
            if (fuzz_redis_nth_sentinel(s, i, host, sizeof host, &port)) {
                FUZZ_CHECK(i < n, "sentinel %zu of %zu", i, n);
                FUZZ_CHECK(strlen(host) > 0 && strlen(host) < sizeof host, "host");
                FUZZ_CHECK(strstr(s, host) != NULL, "host \"%s\" not in the list", host);
                FUZZ_CHECK(port > 0 && port <= 65535, "port %d", port);
            }
        }
        break;
    }
    case 2: {
        int port = 0;
        char *dir = fuzz_pg_socket_dir(s, &port);
        FUZZ_CHECK(dir != NULL, "socket_dir");
        FUZZ_CHECK(strncmp(dir, s, strlen(dir)) == 0, "\"%s\" is not a prefix of the path", dir);
        free(dir);
        break;
    }
    case 3: fuzz_mysql_parse_version(s); break;
    default: {
        kaal_error err;
        long chars = kaal_utf8_chars(s, size - 1);
        int rc = kaal_check_varchar("fuzz", "key", s, size - 1, &err);
        FUZZ_CHECK((rc == KAAL_OK) == (chars >= 0 && chars <= KAAL_VARCHAR_CHARS),
                   "varchar check %d for %ld characters", rc, chars);
        if (rc != KAAL_OK) fuzz_check_error(&err, data + 1, 0);
        break;
    }
    }
    free(s);
    return 0;
}

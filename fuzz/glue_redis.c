/* Redis glue (glue.h): the connection parameter parsers of
 * backend_redis.c (redis_io.c is linked as its own object). */
#include "backend_redis.c"

#include "glue.h"

int fuzz_redis_parse_db(const char *s, long *db) { return parse_db(s, db); }

int fuzz_redis_nth_sentinel(const char *list, size_t i, char *host, size_t hostn, int *port)
{
    return nth_sentinel(list, i, host, hostn, port);
}

size_t fuzz_redis_sentinel_count(const char *list) { return sentinel_count(list); }

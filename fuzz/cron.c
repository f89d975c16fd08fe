/* Fuzz target "cron": the expression parser without a zone (any trailing
 * zone name is parsed but not loaded: times are computed in UTC), then
 * next/prev/match from a few instants, checked against each other. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kaal_cron c;
    kaal_error err;
    size_t i;

    if (kaal_cron_parse((const char *)data, size, &c, &err) != KAAL_OK) {
        fuzz_check_error(&err, data, size);
        return 0;
    }
    FUZZ_CHECK(memchr(c.zone, '\0', sizeof c.zone) != NULL, "zone name not terminated");
    for (i = 0; i < FUZZ_N_INSTANTS; i++) fuzz_check_cron(&c, kaal_tz_utc(), FUZZ_INSTANTS[i], 2);
    return 0;
}

/* Fuzz target "tzif": the TZif reader (RFC 8536 versions 1-4, with the
 * POSIX TZ footer) on arbitrary bytes. A zone it accepts must answer
 * consistently (offsets, spans, wall time to instants) at fixed instants and
 * around its own first transitions, and drive cron next/prev. tz.c is
 * compiled into this file so its static reader can be called directly. */
#include "tz.c"

#include "fuzz.h"

/* Offset changes at least 2 * MAX_ABS_OFFSET apart, as in real zones:
 * then every wall time has at most two instants, which the cron rules
 * (gap and overlap) are defined for. */
static int realistic(const kaal_tz *tz)
{
    size_t i;
    for (i = 1; i < tz->n; i++)
        if (tz->times[i] - tz->times[i - 1] < 2 * MAX_ABS_OFFSET) return 0;
    return 1;
}

/* `thorough`: three expressions at every other instant, two fire times
 * each way; else (the tzif target, whose zones cost more to read) two
 * expressions at every third instant, one fire time each way. */
void fuzz_probe_zone(kaal_tz *tz, int thorough)
{
    static const char *const EXPRS[] = {"30 2 * * *", "*/7 * * * *", "0 0 L * *"};
    kaal_cron c;
    kaal_error err;
    size_t i, k;
    size_t nexprs = thorough ? 3 : 2, every = thorough ? 2 : 3;
    int steps = thorough ? 2 : 1;
    int real = realistic(tz);

    for (i = 0; i < FUZZ_N_INSTANTS; i++) fuzz_check_zone_at(tz, FUZZ_INSTANTS[i], real);
    for (i = 0; i < tz->n && i < 8; i++) {
        if (tz->times[i] > KAAL_TZ_MIN_INSTANT / 2 && tz->times[i] < KAAL_TZ_MAX_INSTANT / 2) {
            fuzz_check_zone_at(tz, tz->times[i] - 1, real);
            fuzz_check_zone_at(tz, tz->times[i], real);
        }
    }
    for (k = 0; k < nexprs; k++) {
        FUZZ_CHECK(kaal_cron_parse(EXPRS[k], strlen(EXPRS[k]), &c, &err) == KAAL_OK, "%s",
                   err.message);
        for (i = 0; i < FUZZ_N_INSTANTS; i += every) {
            if (real) {
                fuzz_check_cron(&c, tz, FUZZ_INSTANTS[i], steps);
            } else { /* answers unchecked, but they must come, safely */
                int64_t out;
                kaal_cron_next(&c, tz, FUZZ_INSTANTS[i], &out, &err);
                kaal_cron_prev(&c, tz, FUZZ_INSTANTS[i], &out, &err);
                kaal_cron_match(&c, tz, FUZZ_INSTANTS[i]);
            }
        }
    }
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kaal_tz tz;
    memset(&tz, 0, sizeof tz);
    if (parse_tzif(data, size, &tz) != 1) return 0;
    strcpy(tz.name, "fuzz");
    fuzz_probe_zone(&tz, 0);
    free(tz.times);
    free(tz.offs);
    return 0;
}
#endif

/* Fuzz target "cron_tz": the expression parser with a zone, then
 * next/prev/match in that zone, checked against each other. The first byte
 * picks a zone from the system database (zones with odd DST rules); the
 * rest is the expression. A trailing zone in the expression is loaded as
 * Kaal::Cron does (names are checked before any file is opened) and wins
 * when it exists. */
#include "fuzz.h"

static const char *const ZONES[] = {
    "UTC",              "America/New_York", "Europe/London",     "Australia/Lord_Howe",
    "Pacific/Apia",     "Asia/Kathmandu",   "America/Santiago",  "Africa/Casablanca",
    "Europe/Dublin",    "Antarctica/Troll", "Pacific/Chatham",   "America/St_Johns",
    "Asia/Tehran",      "Pacific/Kiritimati", "America/Godthab", "Europe/Moscow",
};
#define N_ZONES (sizeof ZONES / sizeof ZONES[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kaal_cron c;
    kaal_error err;
    const kaal_tz *tz;
    size_t i;

    if (size < 1) return 0;
    tz = kaal_tz_load(ZONES[data[0] % N_ZONES], &err);
    FUZZ_CHECK(tz != NULL, "zone %s: %s", ZONES[data[0] % N_ZONES], err.message);
    if (kaal_cron_parse((const char *)data + 1, size - 1, &c, &err) != KAAL_OK) {
        fuzz_check_error(&err, data + 1, size - 1);
        return 0;
    }
    if (c.zone[0]) {
        const kaal_tz *own = kaal_tz_load(c.zone, &err);
        if (own) tz = own;
        else FUZZ_CHECK(err.message[0] != '\0', "a zone error without a message");
    }
    for (i = 0; i < FUZZ_N_INSTANTS; i++) {
        fuzz_check_zone_at(tz, FUZZ_INSTANTS[i], 1);
        fuzz_check_cron(&c, tz, FUZZ_INSTANTS[i], 3);
    }
    return 0;
}

/* Fuzz target "tz_posix": the POSIX TZ rule parser (the footer of a TZif
 * file, e.g. "CET-1CEST,M3.5.0,M10.5.0/3"). An accepted rule is wrapped in a
 * minimal TZif v2 file (no transitions, one type, the rule as footer) and
 * read back, so its expansion into a transition table is exercised and
 * checked like any zone. */
#define FUZZ_NO_MAIN
#include "tzif.c"

/* Appends a TZif header with no transitions, one type (offset off) and a
 * 4-byte abbreviation, and its data block. */
static unsigned char *put_block(unsigned char *p, char version, int32_t off)
{
    memset(p, 0, 44);
    memcpy(p, "TZif", 4);
    p[4] = (unsigned char)version;
    p[39] = 1; /* typecnt */
    p[43] = 4; /* charcnt */
    p += 44;
    p[0] = (unsigned char)((uint32_t)off >> 24);
    p[1] = (unsigned char)((uint32_t)off >> 16);
    p[2] = (unsigned char)((uint32_t)off >> 8);
    p[3] = (unsigned char)off;
    p[4] = 0; /* isdst */
    p[5] = 0; /* abbreviation index */
    memcpy(p + 6, "FUZ", 4);
    return p + 10;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char rule[128];
    posix_tz ptz;
    unsigned char file[2 * 54 + 2 + sizeof rule], *p;
    kaal_tz tz;
    int rc;

    if (size >= sizeof rule || memchr(data, '\0', size) || memchr(data, '\n', size)) return 0;
    memcpy(rule, data, size);
    rule[size] = '\0';
    if (!parse_posix(rule, &ptz)) return 0;
    FUZZ_CHECK(ptz.std_off > -7 * 86400 && ptz.std_off < 7 * 86400, "std offset %d",
               (int)ptz.std_off);

    p = put_block(file, '2', ptz.std_off);
    p = put_block(p, '2', ptz.std_off);
    *p++ = '\n';
    memcpy(p, rule, size);
    p += size;
    *p++ = '\n';
    memset(&tz, 0, sizeof tz);
    rc = parse_tzif(file, (size_t)(p - file), &tz);
    FUZZ_CHECK(rc == 1, "a footer parse_posix accepts made the file unreadable: %s", rule);
    strcpy(tz.name, "fuzz");
    fuzz_probe_zone(&tz, 1);
    free(tz.times);
    free(tz.offs);
    return 0;
}

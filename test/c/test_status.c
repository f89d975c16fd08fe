/* status.c: error messages cut at the buffer size, and the UTF-8 aware clip
 * used wherever a message quotes part of the input. */
#include "ktest.h"
#include "status.h"

static int valid_utf8_end(const char *s)
{
    /* The text does not end inside a character. */
    size_t n = strlen(s), i = n;
    size_t need;
    if (n == 0) return 1;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0) return 0;
    i--;
    if (((unsigned char)s[i] & 0x80) == 0) return i == n - 1;
    need = ((unsigned char)s[i] & 0xE0) == 0xC0 ? 2 : ((unsigned char)s[i] & 0xF0) == 0xE0 ? 3 : 4;
    return n - i == need;
}

static void test_clip(void)
{
    /* "é" is 2 bytes, "€" 3, "😀" 4. */
    KT_CHECK(kaal_utf8_clip("abc", 3, 10) == 3, "short text kept whole");
    KT_CHECK(kaal_utf8_clip("abc", 3, 2) == 2, "ASCII cut anywhere");
    KT_CHECK(kaal_utf8_clip("a\xc3\xa9", 3, 2) == 1, "2-byte character not split");
    KT_CHECK(kaal_utf8_clip("a\xc3\xa9z", 4, 3) == 3, "2-byte character kept when it fits");
    KT_CHECK(kaal_utf8_clip("\xe2\x82\xac", 3, 1) == 0, "3-byte character, cut after 1");
    KT_CHECK(kaal_utf8_clip("\xe2\x82\xac", 3, 2) == 0, "3-byte character, cut after 2");
    KT_CHECK(kaal_utf8_clip("x\xf0\x9f\x98\x80", 5, 4) == 1, "4-byte character, cut after 3");
    KT_CHECK(kaal_utf8_clip("x\xf0\x9f\x98\x80y", 6, 5) == 5, "4-byte character kept when it fits");
    KT_CHECK(kaal_utf8_clip("\xff\xfe", 2, 1) == 1, "bytes that are not UTF-8 cut as they are");
    KT_CHECK(kaal_utf8_clip("abc", 3, 0) == 0, "max 0");
}

static void test_truncated_message(void)
{
    kaal_error err;
    char text[600];
    size_t shift;
    /* Every alignment of a 2-, 3- and 4-byte character across the cut. */
    static const char *chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    size_t c;
    for (c = 0; c < 3; c++) {
        for (shift = 0; shift < 4; shift++) {
            size_t n = 0, k;
            memset(text, 'a', shift);
            n = shift;
            while (n + 4 < sizeof text - 1) {
                for (k = 0; chars[c][k]; k++)
                    text[n++] = chars[c][k];
            }
            text[n] = '\0';
            kaal_error_set(&err, KAAL_EBACKEND, NULL, -1, "backend: %s", text);
            KT_CHECK(strlen(err.message) > sizeof err.message - 5,
                     "message kept close to the buffer size (%zu)", strlen(err.message));
            KT_CHECK(valid_utf8_end(err.message), "char %zu shift %zu: message ends inside a character",
                     c, shift);
        }
    }
    kaal_error_set(&err, KAAL_EBACKEND, NULL, -1, "short %s", "\xc3\xa9t\xc3\xa9");
    KT_CHECK(strcmp(err.message, "short \xc3\xa9t\xc3\xa9") == 0, "short message whole");
}

int main(void)
{
    test_clip();
    test_truncated_message();
    KT_DONE();
}

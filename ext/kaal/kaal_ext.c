/* kaal: extension entry point and the status-code -> exception mapping. */
#include <string.h>

#include "rb_kaal.h"

#include <ruby/encoding.h>

VALUE kaal_mKaal;
VALUE kaal_mNative;

static VALUE error_class(const char *name)
{
    return rb_const_get(kaal_mKaal, rb_intern(name));
}

void kaal_raise(const kaal_error *err)
{
    VALUE klass;
    switch (err->code) {
    case KAAL_ESYNTAX:
    case KAAL_EZONE:
    case KAAL_ENEVER: klass = error_class("CronSyntaxError"); break;
    case KAAL_ERANGE:
    case KAAL_EARG: klass = rb_eArgError; break;
    case KAAL_ENOMEM: rb_memerror(); break;
    case KAAL_ECONNECT: klass = error_class("ConnectionError"); break;
    case KAAL_EDUPLICATE: klass = error_class("DuplicateJobError"); break;
    case KAAL_EUNAVAILABLE: klass = error_class("BackendUnavailableError"); break;
    case KAAL_ECONFIG: klass = error_class("ConfigurationError"); break;
    case KAAL_EINTERRUPTED: rb_thread_check_ints(); klass = error_class("BackendError"); break;
    default: klass = error_class("BackendError"); break;
    }
    rb_exc_raise(rb_exc_new_str(klass, kaal_message_str(err->message)));
}

VALUE kaal_message_str(const char *text)
{
    /* Messages quote user input (job ids, expressions) and server text: a
     * UTF-8 String, with any bytes that are not UTF-8 replaced, so it can be
     * interpolated into the caller's own (UTF-8) strings. */
    VALUE str = rb_utf8_str_new_cstr(text);
    if (rb_enc_str_coderange(str) == ENC_CODERANGE_BROKEN) {
        VALUE fixed = rb_str_scrub(str, Qnil);
        if (!NIL_P(fixed)) str = fixed;
    }
    return str;
}

/* A UTF-8 String of 1 to 255 characters from [A-Za-z0-9_.:/@-] that does
 * not start with "kaal:manual:" -- a job key with nothing more to check (the
 * common case; Kaal::Job checks any other key fully and says what is wrong
 * with it). */
int kaal_plain_key(VALUE key)
{
    const char *s;
    long n, i;
    if (!RB_TYPE_P(key, T_STRING) || rb_enc_get_index(key) != rb_utf8_encindex()) return 0;
    s = RSTRING_PTR(key);
    n = RSTRING_LEN(key);
    if (n < 1 || n > 255) return 0;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == ':' || c == '/' || c == '@' || c == '-'))
            return 0;
    }
    return !(n >= 12 && memcmp(s, "kaal:manual:", 12) == 0);
}

/* Kaal::Native.plain_key?(key): kaal_plain_key. */
static VALUE native_plain_key_p(VALUE self, VALUE key)
{
    (void)self;
    return kaal_plain_key(key) ? Qtrue : Qfalse;
}

__attribute__((visibility("default"))) void Init_kaal_ext(void)
{
    kaal_mKaal = rb_define_module("Kaal");
    kaal_mNative = rb_define_module_under(kaal_mKaal, "Native");
    kaal_init_cron();
    kaal_init_idempotency();
    kaal_init_backend();
    kaal_init_yaml();
    kaal_init_job();
    rb_define_module_function(kaal_mNative, "plain_key?", native_plain_key_p, 1);
}

/* Kaal::Native.idempotency_key(namespace, key, fire_epoch) -> String */
#include "idempotency.h"
#include "rb_kaal.h"

static VALUE native_idempotency_key(VALUE self, VALUE ns, VALUE key, VALUE epoch)
{
    char out[KAAL_IDEMPOTENCY_KEY_LEN + 1];
    (void)self;
    StringValue(ns);
    StringValue(key);
    kaal_idempotency_key(RSTRING_PTR(ns), (size_t)RSTRING_LEN(ns), RSTRING_PTR(key),
                         (size_t)RSTRING_LEN(key), NUM2LL(epoch), out);
    return rb_usascii_str_new(out, KAAL_IDEMPOTENCY_KEY_LEN);
}

void kaal_init_idempotency(void)
{
    rb_define_module_function(kaal_mNative, "idempotency_key", native_idempotency_key, 3);
}

/* kaal: shared declarations of the Ruby binding files (the only ones that
 * include ruby.h). */
#ifndef KAAL_RB_KAAL_H
#define KAAL_RB_KAAL_H

#include <ruby.h>

#include "status.h"

extern VALUE kaal_mKaal;   /* Kaal */
extern VALUE kaal_mNative; /* Kaal::Native */

/* Raise the Ruby exception for err->code (the one place that maps codes to
 * classes). Never returns. */
NORETURN(void kaal_raise(const kaal_error *err));

/* A C message as a Ruby String: UTF-8, with invalid bytes replaced. */
VALUE kaal_message_str(const char *text);

/* Whether key is a job key with nothing more to check (Native.plain_key?). */
int kaal_plain_key(VALUE key);

/* A Kaal::Job (klass) with key and spec, as Job.build_alike makes it, or
 * Qundef when the key needs Kaal::Job's own checks. */
VALUE kaal_job_alike(VALUE klass, VALUE key, VALUE spec);

void kaal_init_cron(void);
void kaal_init_idempotency(void);
void kaal_init_backend(void);
void kaal_init_yaml(void);
void kaal_init_job(void);

#endif

/* kaal: Kaal::Job objects made without Ruby code, for the jobs that are
 * defined like the one before them (a scheduler file's entries that differ
 * only in their key): Kaal::Native.job_alike(klass, key, spec) -> Job, or
 * nil when the key is not a plain one (then Kaal::Job checks it and says
 * what is wrong). The object is the one Job.build_alike makes: @key (a
 * frozen String), @next_epoch (nil) and @spec, in that order, and nothing
 * else, so it keeps its instance variables inside the object. */
#include "rb_kaal.h"

static ID id_key, id_next_epoch, id_spec;

VALUE kaal_job_alike(VALUE klass, VALUE key, VALUE spec)
{
    VALUE job;
    if (!kaal_plain_key(key)) return Qundef;
    /* the caller may change its String later; the Job's stays as it is */
    if (!OBJ_FROZEN(key)) key = rb_obj_freeze(rb_str_dup(key));
    job = rb_obj_alloc(klass);
    rb_ivar_set(job, id_key, key);
    rb_ivar_set(job, id_next_epoch, Qnil);
    rb_ivar_set(job, id_spec, spec);
    return job;
}

static VALUE native_job_alike(VALUE self, VALUE klass, VALUE key, VALUE spec)
{
    VALUE job = kaal_job_alike(klass, key, spec);
    (void)self;
    return job == Qundef ? Qnil : job;
}

void kaal_init_job(void)
{
    id_key = rb_intern("@key");
    id_next_epoch = rb_intern("@next_epoch");
    id_spec = rb_intern("@spec");
    rb_define_module_function(kaal_mNative, "job_alike", native_job_alike, 3);
}

/* kaal: Kaal::Job objects made without Ruby code, for the jobs that are
 * defined like the one before them (a scheduler file's entries that differ
 * only in their key): Kaal::Native.job_alike(klass, key, spec) -> Job, or
 * nil when the key is not a plain one (then Kaal::Job checks it and says
 * what is wrong). The object is the one Job.build_alike makes: @key (a
 * frozen String), @next_epoch (nil) and @spec, in that order, and nothing
 * else, so it keeps its instance variables inside the object.
 * Kaal::Native.same_values?(a, b): whether a job's definition is the
 * previous one's. */
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

/* Kaal::Native.same_values?(a, b, skip = nil): a.eql?(b) for two Arrays
 * of plain values (a job's definition), without Array#eql?'s guard against
 * an Array that contains itself, which costs more than the comparison at a
 * million Kaal.register calls. skip: an index whose values are not
 * compared (the args of jobs defined alike but for them). */
static VALUE native_same_values_p(int argc, VALUE *argv, VALUE self)
{
    VALUE a, b, skip_at;
    long i, n, skip;
    (void)self;
    rb_scan_args(argc, argv, "21", &a, &b, &skip_at);
    skip = NIL_P(skip_at) ? -1 : NUM2LONG(skip_at);
    Check_Type(a, T_ARRAY);
    Check_Type(b, T_ARRAY);
    n = RARRAY_LEN(a);
    if (RARRAY_LEN(b) != n) return Qfalse;
    for (i = 0; i < n; i++) {
        if (i == skip) continue;
        /* rb_eql: identity first, then eql? (a nested Array keeps its guard) */
        if (!rb_eql(RARRAY_AREF(a, i), RARRAY_AREF(b, i))) return Qfalse;
        if (RARRAY_LEN(a) != n || RARRAY_LEN(b) != n) return Qfalse; /* an eql? changed them */
    }
    return Qtrue;
}

void kaal_init_job(void)
{
    id_key = rb_intern("@key");
    id_next_epoch = rb_intern("@next_epoch");
    id_spec = rb_intern("@spec");
    rb_define_module_function(kaal_mNative, "job_alike", native_job_alike, 3);
    rb_define_module_function(kaal_mNative, "same_values?", native_same_values_p, -1);
}

/* kaal: Kaal::Job objects made without Ruby code, for the jobs that are
 * defined like the one before them (a scheduler file's entries that differ
 * only in their key): Kaal::Native.job_alike(klass, key, spec) -> Job, or
 * nil when the key is not a plain one (then Kaal::Job checks it and says
 * what is wrong). The object is the one Job.build_alike makes: @key (a
 * frozen String) and @spec, in that order, and nothing else, so it keeps
 * its instance variables inside the object.
 * Kaal::Native.same_values?(a, b): whether a job's definition is the
 * previous one's. Kaal::Native.build_alike: Kaal::Job.build in one call
 * for a definition seen recently, or one that differs from it only in its
 * args (a job per customer). */
#include "rb_kaal.h"

#include <ruby/encoding.h>
#include <string.h>

static ID id_key, id_spec, id_base, id_args, id_templated, id_ArgsSpec;

VALUE kaal_job_alike(VALUE klass, VALUE key, VALUE spec)
{
    VALUE job;
    if (!kaal_plain_key(key)) return Qundef;
    /* the caller may change its String later; the Job's stays as it is */
    if (!OBJ_FROZEN(key)) key = rb_obj_freeze(rb_str_dup(key));
    job = rb_obj_alloc(klass);
    rb_ivar_set(job, id_key, key);
    rb_ivar_set(job, id_spec, spec);
    return job;
}

static VALUE native_job_alike(VALUE self, VALUE klass, VALUE key, VALUE spec)
{
    VALUE job = kaal_job_alike(klass, key, spec);
    (void)self;
    return job == Qundef ? Qnil : job;
}

/* a.eql?(b) for two Arrays of plain values (a job's definition), without
 * Array#eql?'s guard against an Array that contains itself, which costs
 * more than the comparison at a million Kaal.register calls. skip: an index
 * whose values are not compared (the args of jobs defined alike but for
 * them), or -1. */
static int same_values(VALUE a, VALUE b, long skip)
{
    long i, n;
    Check_Type(a, T_ARRAY);
    Check_Type(b, T_ARRAY);
    n = RARRAY_LEN(a);
    if (RARRAY_LEN(b) != n) return 0;
    for (i = 0; i < n; i++) {
        if (i == skip) continue;
        /* rb_eql: identity first, then eql? (a nested Array keeps its guard) */
        if (!rb_eql(RARRAY_AREF(a, i), RARRAY_AREF(b, i))) return 0;
        if (RARRAY_LEN(a) != n || RARRAY_LEN(b) != n) return 0; /* an eql? changed them */
    }
    return 1;
}

/* Kaal::Native.same_values?(a, b, skip = nil): same_values. */
static VALUE native_same_values_p(int argc, VALUE *argv, VALUE self)
{
    VALUE a, b, skip_at;
    (void)self;
    rb_scan_args(argc, argv, "21", &a, &b, &skip_at);
    return same_values(a, b, NIL_P(skip_at) ? -1 : NUM2LONG(skip_at)) ? Qtrue : Qfalse;
}

/* Kaal::Native.values_hash(values, skip) -> Integer: a hash of an Array's
 * values but the one at skip, for finding a definition seen recently that
 * differs from this one only in its args. Equal (eql?) values give equal
 * hashes; a match is still checked with same_values?, so values hashed by
 * identity (classes, Procs, Symbols) only cost a miss, never a wrong hit.
 * Strings and small values are hashed without a method call, as a
 * million Kaal.register calls make one each. */
static VALUE values_hash(VALUE values, long skip)
{
    long i, n;
    st_index_t h;
    Check_Type(values, T_ARRAY);
    n = RARRAY_LEN(values);
    h = rb_hash_start((st_index_t)n);
    for (i = 0; i < n; i++) {
        VALUE v = RARRAY_AREF(values, i);
        st_index_t vh;
        if (i == skip) continue;
        if (RB_SPECIAL_CONST_P(v) || RB_TYPE_P(v, T_SYMBOL) || RB_TYPE_P(v, T_CLASS) || RB_TYPE_P(v, T_MODULE) ||
            RB_TYPE_P(v, T_DATA))
            vh = (st_index_t)v;
        else if (RBASIC_CLASS(v) == rb_cString)
            vh = rb_str_hash(v);
        else if ((RB_TYPE_P(v, T_HASH) && RHASH_SIZE(v) == 0) || (RB_TYPE_P(v, T_ARRAY) && RARRAY_LEN(v) == 0))
            vh = (st_index_t)RB_BUILTIN_TYPE(v); /* the empty args/kwargs/set most jobs have */
        else
            vh = (st_index_t)NUM2LONG(rb_hash(v));
        h = rb_hash_uint(h, vh);
    }
    return LONG2FIX((long)(rb_hash_end(h) >> 2)); /* fits a Fixnum */
}

static VALUE native_values_hash(VALUE self, VALUE values, VALUE skip_at)
{
    (void)self;
    return values_hash(values, NUM2LONG(skip_at));
}

/* Whether v holds no placeholder: a String without "{{" or "}}", or any
 * value that is not a String, list or mapping (the test of Kaal::Job's
 * plain_arg). Strings in an encoding that is not ASCII-compatible go to
 * Kaal::Job's own checks. */
static int plain_arg(VALUE v)
{
    const char *s;
    long n, i;
    if (RB_SPECIAL_CONST_P(v)) return 1;
    switch (RB_BUILTIN_TYPE(v)) {
    case T_ARRAY:
    case T_HASH: return 0;
    case T_STRING: break;
    default: return 1;
    }
    if (!rb_enc_asciicompat(rb_enc_get(v))) return 0;
    s = RSTRING_PTR(v);
    n = RSTRING_LEN(v);
    for (i = 0; i + 1 < n; i++)
        if ((s[i] == '{' && s[i + 1] == '{') || (s[i] == '}' && s[i + 1] == '}')) return 0;
    return 1;
}

/* Kaal::Job::ArgsSpec (klass: Kaal::Job), looked up once: a constant
 * lookup per job costs more than the rest of its Spec. */
static VALUE args_spec_class(VALUE klass)
{
    static VALUE found = Qundef;
    if (found == Qundef) {
        VALUE c = rb_const_get_at(klass, id_ArgsSpec);
        Check_Type(c, T_CLASS);
        rb_gc_register_mark_object(c); /* kept, and never moved */
        found = c;
    }
    return found;
}

/* The ArgsSpec of like (a Job made before, or nil) when it differs from
 * base in these same args, so consecutive jobs with the same args share
 * one; else Qnil. */
static VALUE shared_args_spec(VALUE like, VALUE base, VALUE args)
{
    VALUE spec, other;
    if (!RB_TYPE_P(like, T_OBJECT)) return Qnil;
    spec = rb_attr_get(like, id_spec);
    if (!RB_TYPE_P(spec, T_OBJECT) || rb_attr_get(spec, id_base) != base) return Qnil;
    other = rb_attr_get(spec, id_args);
    return rb_eql(other, args) ? spec : Qnil;
}

/* The Job Kaal::Job makes for a definition that differs from base's (a
 * Spec) only in args, when those are a list of values without placeholders
 * and the key is a plain one (else nil: Kaal::Job checks them and says what
 * is wrong). Its Spec: a Kaal::Job::ArgsSpec (@base, @args, @templated, as
 * ArgsSpec#initialize sets them) holding a frozen copy of args, the caller
 * may change theirs; templated: whether base's kwargs hold placeholders. */
static VALUE job_with_args(VALUE klass, VALUE key, VALUE base, VALUE args, VALUE templated, VALUE like)
{
    long i, n;
    VALUE spec, job;
    if (!RB_TYPE_P(args, T_ARRAY) || !kaal_plain_key(key)) return Qnil;
    n = RARRAY_LEN(args);
    for (i = 0; i < n; i++)
        if (!plain_arg(RARRAY_AREF(args, i))) return Qnil;
    spec = shared_args_spec(like, base, args);
    if (NIL_P(spec)) {
        if (!OBJ_FROZEN(args)) args = rb_obj_freeze(rb_ary_new_from_values(n, RARRAY_CONST_PTR(args)));
        spec = rb_obj_alloc(args_spec_class(klass));
        rb_ivar_set(spec, id_base, base);
        rb_ivar_set(spec, id_args, args);
        rb_ivar_set(spec, id_templated, RTEST(templated) ? Qtrue : Qfalse);
        rb_obj_freeze(spec);
    }
    job = kaal_job_alike(klass, key, spec);
    return job == Qundef ? Qnil : job;
}

/* Kaal::Native.build_alike(klass, key, definition, args_at, last, bases,
 * like) -> Job or nil: Kaal::Job.build in one call for a definition it has
 * seen. last: [definition, Spec] of the previous call; the same definition
 * gives a Job with that Spec (kaal_job_alike). bases: values_hash(a
 * definition, args_at) => [definition, Spec, kwargs templated]; one that
 * differs only in its args (at args_at) gives a Job with that Spec and
 * these args (job_with_args; like: the Job made before). nil for any other
 * definition or key: Kaal::Job builds and checks it. */
static VALUE native_build_alike(VALUE self, VALUE klass, VALUE key, VALUE definition, VALUE args_at, VALUE last,
                                VALUE bases, VALUE like)
{
    long skip = NUM2LONG(args_at);
    VALUE entry, job;
    (void)self;
    Check_Type(definition, T_ARRAY);
    if (RB_TYPE_P(last, T_ARRAY) && RARRAY_LEN(last) == 2 && same_values(RARRAY_AREF(last, 0), definition, -1)) {
        job = kaal_job_alike(klass, key, RARRAY_AREF(last, 1));
        return job == Qundef ? Qnil : job;
    }
    Check_Type(bases, T_HASH);
    if (skip < 0 || skip >= RARRAY_LEN(definition)) return Qnil;
    entry = rb_hash_lookup2(bases, values_hash(definition, skip), Qnil);
    if (!RB_TYPE_P(entry, T_ARRAY) || RARRAY_LEN(entry) != 3 || !same_values(RARRAY_AREF(entry, 0), definition, skip))
        return Qnil;
    return job_with_args(klass, key, RARRAY_AREF(entry, 1), RARRAY_AREF(definition, skip), RARRAY_AREF(entry, 2),
                         like);
}

void kaal_init_job(void)
{
    id_key = rb_intern("@key");
    id_spec = rb_intern("@spec");
    id_base = rb_intern("@base");
    id_args = rb_intern("@args");
    id_templated = rb_intern("@templated");
    id_ArgsSpec = rb_intern("ArgsSpec");
    rb_define_module_function(kaal_mNative, "values_hash", native_values_hash, 2);
    rb_define_module_function(kaal_mNative, "build_alike", native_build_alike, 7);
    rb_define_module_function(kaal_mNative, "job_alike", native_job_alike, 3);
    rb_define_module_function(kaal_mNative, "same_values?", native_same_values_p, -1);
}

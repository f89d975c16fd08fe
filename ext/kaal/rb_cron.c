/* kaal: the Kaal::Cron class (TypedData around the pure engine in cron.c).
 *
 * A Kaal::Cron is immutable: the parsed struct lives inline in the object, the
 * zone is a `const kaal_tz *` (zones are loaded once and cached for the life
 * of the process by tz.c, so the pointer never dangles), and the two Ruby
 * values it holds (the expression and the zone name) are frozen strings. The
 * object is frozen when created and, with RUBY_TYPED_FROZEN_SHAREABLE, is
 * Ractor-shareable.
 *
 * The public API (keyword arguments, defaults, documentation) is in
 * lib/kaal/cron.rb; the methods here are small primitives:
 *
 *   Kaal::Cron.__parse(expr, zone_name) -> Kaal::Cron   (zone_name: String)
 *   #__next_time(from) / #__previous_time(from) -> Time  (from: Time/Integer/#to_time)
 *   #__next_times(from, count) -> [Time]
 *   #next_epoch(Integer) / #previous_epoch(Integer) -> Integer  (hot path, public)
 *   #__match?(time) -> true/false
 *   #__offset_at(Integer) -> Integer
 *   #__seconds?, #__zone_in_text?  (the shape of the text, for the explainer)
 *   #__fields -> Hash of the parsed bitsets as Arrays (for tests)
 *   #expression, #time_zone, #==, #eql?, #hash  (public)
 */
#include <string.h>
#include <time.h>

#include "cron.h"
#include "rb_kaal.h"
#include "tz.h"

static VALUE cCron;
static ID id_to_time;

typedef struct cron_obj {
    kaal_cron cron;
    const kaal_tz *tz;
    VALUE expression; /* frozen String, as given */
    VALUE zone_name;  /* frozen String, kaal_tz_name(tz) */
} cron_obj;

static void cron_mark(void *p)
{
    cron_obj *c = p;
    rb_gc_mark_movable(c->expression);
    rb_gc_mark_movable(c->zone_name);
}

static void cron_compact(void *p)
{
    cron_obj *c = p;
    c->expression = rb_gc_location(c->expression);
    c->zone_name = rb_gc_location(c->zone_name);
}

static size_t cron_memsize(const void *p)
{
    (void)p;
    return sizeof(cron_obj);
}

static const rb_data_type_t cron_type = {
    "Kaal::Cron",
    {cron_mark, RUBY_TYPED_DEFAULT_FREE, cron_memsize, cron_compact, {0}},
    0,
    0,
    RUBY_TYPED_FREE_IMMEDIATELY | RUBY_TYPED_WB_PROTECTED | RUBY_TYPED_FROZEN_SHAREABLE,
};

static VALUE cron_alloc(VALUE klass)
{
    cron_obj *c;
    VALUE obj = TypedData_Make_Struct(klass, cron_obj, &cron_type, c);
    c->expression = Qnil;
    c->zone_name = Qnil;
    return obj;
}

static cron_obj *get_cron(VALUE self)
{
    cron_obj *c;
    TypedData_Get_Struct(self, cron_obj, &cron_type, c);
    if (!c->tz) rb_raise(rb_eTypeError, "uninitialized Kaal::Cron");
    return c;
}

static void raise_status(int rc, const kaal_error *err)
{
    if (rc != KAAL_OK) kaal_raise(err);
}

/* Kaal::Cron.__parse(expr, zone_name): the trailing zone in expr, if any,
 * overrides zone_name. */
static VALUE cron_s_parse(VALUE klass, VALUE expr, VALUE zone)
{
    kaal_error err;
    kaal_cron parsed;
    const kaal_tz *tz;
    VALUE obj;
    cron_obj *c;

    if (!RB_TYPE_P(expr, T_STRING))
        rb_raise(rb_eArgError, "cron expression must be a String, got %" PRIsVALUE,
                 rb_obj_class(expr));
    StringValue(zone);
    kaal_error_clear(&err);
    memset(&parsed, 0, sizeof parsed);
    raise_status(kaal_cron_parse(RSTRING_PTR(expr), (size_t)RSTRING_LEN(expr), &parsed, &err),
                 &err);
    if (parsed.zone[0]) {
        tz = kaal_tz_load(parsed.zone, &err);
        if (!tz) {
            /* Name the part of the expression at fault, like the field errors. */
            kaal_error named;
            kaal_error_set(&named, err.code, "time zone", err.offset, "time zone field: %s in \"%.*s\"",
                           err.message, (int)(RSTRING_LEN(expr) > 120 ? 120 : RSTRING_LEN(expr)),
                           RSTRING_PTR(expr));
            kaal_raise(&named);
        }
    } else {
        tz = kaal_tz_load(StringValueCStr(zone), &err);
        if (!tz) kaal_raise(&err);
    }

    obj = cron_alloc(klass);
    c = DATA_PTR(obj);
    c->cron = parsed;
    c->tz = tz;
    RB_OBJ_WRITE(obj, &c->expression, rb_str_new_frozen(expr));
    RB_OBJ_WRITE(obj, &c->zone_name, rb_interned_str_cstr(kaal_tz_name(tz)));
    rb_obj_freeze(obj);
    return obj;
}

/* from (Integer Unix seconds, Time, or anything but a String with #to_time) -> seconds
 * and nanoseconds (nsec 0 for an Integer). */
static int64_t to_instant(VALUE from, long *nsec)
{
    struct timespec ts;
    *nsec = 0;
    if (RB_INTEGER_TYPE_P(from)) return NUM2LL(from);
    if (!rb_obj_is_kind_of(from, rb_cTime)) {
        /* A String is refused even when ActiveSupport gives it #to_time:
         * that parse silently assumes the process zone. */
        if (RB_TYPE_P(from, T_STRING))
            rb_raise(rb_eTypeError,
                     "expected a Time or an Integer (Unix seconds), got a String; parse it "
                     "first, e.g. Time.iso8601(%" PRIsVALUE ")",
                     rb_inspect(from));
        if (!rb_respond_to(from, id_to_time))
            rb_raise(rb_eTypeError,
                     "expected a Time, an Integer (Unix seconds) or an object responding to "
                     "to_time, got %" PRIsVALUE,
                     rb_obj_class(from));
        from = rb_funcall(from, id_to_time, 0);
        if (!rb_obj_is_kind_of(from, rb_cTime))
            rb_raise(rb_eTypeError, "to_time returned %" PRIsVALUE ", not a Time",
                     rb_obj_class(from));
    }
    ts = rb_time_timespec(from);
    *nsec = ts.tv_nsec;
    return (int64_t)ts.tv_sec;
}

/* from -> whole seconds. round_up: ceil for fractional Times (previous),
 * floor otherwise (next), so results stay strictly after/before `from`. */
static int64_t from_epoch(VALUE from, int round_up)
{
    long nsec;
    int64_t s = to_instant(from, &nsec);
    return (round_up && nsec > 0) ? s + 1 : s;
}

/* A Time at t in the cron's zone (its fixed offset at t); built from the
 * Integer itself, never narrowed through time_t. */
static VALUE make_time(const cron_obj *c, int64_t t)
{
    return rb_time_num_new(LL2NUM(t), INT2NUM(kaal_tz_offset_at(c->tz, t)));
}

static int64_t next_of(const cron_obj *c, int64_t from)
{
    kaal_error err;
    int64_t out = 0;
    kaal_error_clear(&err);
    raise_status(kaal_cron_next(&c->cron, c->tz, from, &out, &err), &err);
    return out;
}

static int64_t prev_of(const cron_obj *c, int64_t from)
{
    kaal_error err;
    int64_t out = 0;
    kaal_error_clear(&err);
    raise_status(kaal_cron_prev(&c->cron, c->tz, from, &out, &err), &err);
    return out;
}

static VALUE cron_next_time(VALUE self, VALUE from)
{
    const cron_obj *c = get_cron(self);
    return make_time(c, next_of(c, from_epoch(from, 0)));
}

static VALUE cron_previous_time(VALUE self, VALUE from)
{
    const cron_obj *c = get_cron(self);
    return make_time(c, prev_of(c, from_epoch(from, 1)));
}

#define NEXT_TIMES_PREALLOC 1024

static VALUE cron_next_times(VALUE self, VALUE from, VALUE vcount)
{
    const cron_obj *c = get_cron(self);
    long count = NUM2LONG(vcount), i;
    int64_t t = from_epoch(from, 0);
    VALUE ary;
    if (count < 0) rb_raise(rb_eArgError, "count must be >= 0, got %ld", count);
    /* A large count grows the Array as it fills instead of reserving it all
     * up front, and the loop can be interrupted (Timeout, Thread#kill). */
    ary = rb_ary_new_capa(count < NEXT_TIMES_PREALLOC ? count : NEXT_TIMES_PREALLOC);
    for (i = 0; i < count; i++) {
        rb_thread_check_ints();
        t = next_of(c, t);
        rb_ary_push(ary, make_time(c, t));
    }
    return ary;
}

/* Hot path: Integer Unix seconds in, Integer out, no Time allocated. */
static VALUE cron_next_epoch(VALUE self, VALUE from)
{
    const cron_obj *c = get_cron(self);
    if (!RB_INTEGER_TYPE_P(from))
        rb_raise(rb_eTypeError, "expected an Integer (Unix seconds), got %" PRIsVALUE,
                 rb_obj_class(from));
    return LL2NUM(next_of(c, NUM2LL(from)));
}

static VALUE cron_previous_epoch(VALUE self, VALUE from)
{
    const cron_obj *c = get_cron(self);
    if (!RB_INTEGER_TYPE_P(from))
        rb_raise(rb_eTypeError, "expected an Integer (Unix seconds), got %" PRIsVALUE,
                 rb_obj_class(from));
    return LL2NUM(prev_of(c, NUM2LL(from)));
}

/* A fractional Time is never a fire time (fire times are whole seconds). */
static VALUE cron_match(VALUE self, VALUE time)
{
    const cron_obj *c = get_cron(self);
    long nsec;
    int64_t t = to_instant(time, &nsec);
    if (nsec != 0) return Qfalse;
    return kaal_cron_match(&c->cron, c->tz, t) ? Qtrue : Qfalse;
}

static VALUE cron_offset_at(VALUE self, VALUE t)
{
    const cron_obj *c = get_cron(self);
    return INT2NUM(kaal_tz_offset_at(c->tz, NUM2LL(t)));
}

static VALUE cron_has_seconds(VALUE self)
{
    return (get_cron(self)->cron.flags & KAAL_CRON_HAS_SECONDS) ? Qtrue : Qfalse;
}

static VALUE cron_zone_in_text(VALUE self)
{
    return get_cron(self)->cron.zone[0] ? Qtrue : Qfalse;
}

static VALUE bits_to_ary(uint64_t bits, int lo, int hi)
{
    VALUE ary = rb_ary_new();
    int i;
    for (i = lo; i <= hi; i++)
        if (bits & ((uint64_t)1 << i)) rb_ary_push(ary, INT2FIX(i));
    return ary;
}

/* The parsed fields as Ruby values, for tests of the explainer:
 * {seconds:, minutes:, hours:, days:, months:, weekdays:, last_offsets:,
 *  nearest_weekday:, last_dow:, nth_dow: [[weekday, k], ...], last_weekday:} */
static VALUE cron_fields(VALUE self)
{
    const kaal_cron *x = &get_cron(self)->cron;
    VALUE h = rb_hash_new(), nth = rb_ary_new();
    int d, k;
    rb_hash_aset(h, ID2SYM(rb_intern("seconds")), bits_to_ary(x->seconds, 0, 59));
    rb_hash_aset(h, ID2SYM(rb_intern("minutes")), bits_to_ary(x->minutes, 0, 59));
    rb_hash_aset(h, ID2SYM(rb_intern("hours")), bits_to_ary(x->hours, 0, 23));
    rb_hash_aset(h, ID2SYM(rb_intern("days")), bits_to_ary(x->days, 1, 31));
    rb_hash_aset(h, ID2SYM(rb_intern("months")), bits_to_ary(x->months, 1, 12));
    rb_hash_aset(h, ID2SYM(rb_intern("weekdays")), bits_to_ary(x->weekdays, 0, 6));
    rb_hash_aset(h, ID2SYM(rb_intern("last_offsets")), bits_to_ary(x->last_offsets, 0, 30));
    rb_hash_aset(h, ID2SYM(rb_intern("nearest_weekday")), bits_to_ary(x->near_weekday, 1, 31));
    rb_hash_aset(h, ID2SYM(rb_intern("last_dow")), bits_to_ary(x->last_dow, 0, 6));
    for (d = 0; d < 7; d++)
        for (k = 1; k <= 5; k++)
            if (x->nth_dow[d] & (1u << k)) rb_ary_push(nth, rb_assoc_new(INT2FIX(d), INT2FIX(k)));
    rb_hash_aset(h, ID2SYM(rb_intern("nth_dow")), nth);
    rb_hash_aset(h, ID2SYM(rb_intern("last_weekday")), x->last_weekday ? Qtrue : Qfalse);
    return h;
}

static VALUE cron_expression(VALUE self)
{
    return get_cron(self)->expression;
}

static VALUE cron_time_zone(VALUE self)
{
    return get_cron(self)->zone_name;
}

/* Equality is by schedule: the parsed fields (not the text) and the zone, so
 * "0 9 * * MON" == "0 9 * * 1" and "@daily" == "0 0 * * *". The trailing-zone
 * text itself is not compared (the loaded zone is). */
static int same_schedule(const cron_obj *a, const cron_obj *b)
{
    const kaal_cron *x = &a->cron, *y = &b->cron;
    return a->tz == b->tz && x->seconds == y->seconds && x->minutes == y->minutes &&
           x->hours == y->hours && x->days == y->days && x->last_offsets == y->last_offsets &&
           x->near_weekday == y->near_weekday && x->months == y->months &&
           x->weekdays == y->weekdays && x->last_dow == y->last_dow &&
           memcmp(x->nth_dow, y->nth_dow, sizeof x->nth_dow) == 0 &&
           x->last_weekday == y->last_weekday &&
           (x->flags & ~KAAL_CRON_HAS_SECONDS) == (y->flags & ~KAAL_CRON_HAS_SECONDS);
}

static VALUE cron_eq(VALUE self, VALUE other)
{
    if (self == other) return Qtrue;
    if (!rb_typeddata_is_kind_of(other, &cron_type)) return Qfalse;
    return same_schedule(get_cron(self), get_cron(other)) ? Qtrue : Qfalse;
}

static VALUE cron_hash(VALUE self)
{
    const cron_obj *c = get_cron(self);
    const kaal_cron *x = &c->cron;
    st_index_t h = rb_hash_start((st_index_t)(uintptr_t)c->tz);
    h = rb_hash_uint(h, (st_index_t)x->seconds);
    h = rb_hash_uint(h, (st_index_t)(x->seconds >> 32));
    h = rb_hash_uint(h, (st_index_t)x->minutes);
    h = rb_hash_uint(h, (st_index_t)(x->minutes >> 32));
    h = rb_hash_uint(h, x->hours);
    h = rb_hash_uint(h, x->days);
    h = rb_hash_uint(h, x->last_offsets);
    h = rb_hash_uint(h, x->near_weekday);
    h = rb_hash_uint(h, x->months);
    h = rb_hash_uint(h, x->weekdays);
    h = rb_hash_uint(h, x->last_dow);
    h = rb_hash_uint(h, rb_memhash(x->nth_dow, sizeof x->nth_dow));
    h = rb_hash_uint(h, x->last_weekday);
    h = rb_hash_uint(h, (st_index_t)(x->flags & ~KAAL_CRON_HAS_SECONDS));
    return ST2FIX(rb_hash_end(h));
}

void kaal_init_cron(void)
{
    /* Kaal::Cron is immutable and its C functions touch no mutable global
     * state (zones are cached under a mutex in tz.c), so its methods may run
     * in any Ractor. Scoped to the methods defined here. */
    rb_ext_ractor_safe(true);
    id_to_time = rb_intern("to_time");
    cCron = rb_define_class_under(kaal_mKaal, "Cron", rb_cObject);
    rb_undef_alloc_func(cCron);
    rb_define_private_method(rb_singleton_class(cCron), "__parse", cron_s_parse, 2);
    rb_define_private_method(cCron, "__next_time", cron_next_time, 1);
    rb_define_private_method(cCron, "__previous_time", cron_previous_time, 1);
    rb_define_private_method(cCron, "__next_times", cron_next_times, 2);
    rb_define_private_method(cCron, "__match?", cron_match, 1);
    rb_define_private_method(cCron, "__offset_at", cron_offset_at, 1);
    rb_define_private_method(cCron, "__seconds?", cron_has_seconds, 0);
    rb_define_private_method(cCron, "__fields", cron_fields, 0);
    rb_define_private_method(cCron, "__zone_in_text?", cron_zone_in_text, 0);
    rb_define_method(cCron, "next_epoch", cron_next_epoch, 1);
    rb_define_method(cCron, "previous_epoch", cron_previous_epoch, 1);
    rb_define_method(cCron, "expression", cron_expression, 0);
    rb_define_method(cCron, "time_zone", cron_time_zone, 0);
    rb_define_method(cCron, "==", cron_eq, 1);
    rb_define_method(cCron, "eql?", cron_eq, 1);
    rb_define_method(cCron, "hash", cron_hash, 0);
    rb_ext_ractor_safe(false);
}

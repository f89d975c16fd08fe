/* kaal: Kaal::Native.yaml_blocks(text, tokenize, items = nil, more = nil, alike = nil) -> value, or nil.
 *
 * A reader for the plain block YAML that kaal's files are made of (mappings
 * and sequences by indentation, one scalar per line), so a scheduler file
 * with a million jobs does not pay Psych's event per scalar. It reads only a
 * strict subset and returns nil for anything else (a tag, an anchor, a
 * multi-line scalar, an escape in a double-quoted string, a tab, ...), and
 * the caller then parses the text with Psych: the result is always what
 * YAML.safe_load gives. Comments: whole lines, and after a value ("cron:
 * 0 9 * * *  # every morning"), as YAML has them: a '#' after a space, not
 * inside quotes.
 *
 * Values as Psych's ToRuby makes them: quoted scalars are Strings; a plain
 * scalar that starts with an ASCII letter or '_' and is all ASCII is a
 * String, or true/false/nil for the YAML 1.1 words (Psych::ScalarScanner's
 * first rule); any other plain scalar (a number, a cron expression) is
 * handed to tokenize.call(string), but for a decimal integer and a scalar
 * with a space and no ':' (a String, as Psych would say; a cron
 * expression). Duplicate keys: the last one counts, as
 * in Psych. Lines: "\n" only (a "\r" anywhere returns nil).
 *
 * items: each item of a "jobs:" list at the top or in a top-level section
 * is handed to items.call(section name or nil, index, item) as soon as it is
 * read, and the list keeps what that returns, so a scheduler file's jobs can
 * be built while it is read instead of after (a million parsed entries are
 * never alive at once). The call may raise to stop reading.
 *
 * more: the text may come in parts, each ending with a whole line: text is
 * the first, and more.call returns the next (nil after the last), so a big
 * file is never in memory whole.
 *
 * alike: an Array that items.call fills, after an item, with [klass, spec,
 * table] to say "an item written the same way, but for the value of its
 * key, is the Job klass with that key and spec, in table" (or empties).
 * Such items (a million jobs with one cron and one class) are then read
 * without building their Hash or calling items: the item's text but the
 * key's value (after its "- key: ", or on a later "key: " line) is compared
 * byte for byte with the previous item's, and the Job is made in C
 * (kaal_job_alike) and stored in table. With
 * [klass, spec, table, args_spec, base, templated], an item that also
 * differs in the value of its "args: [...]" line (after the key's) gets the spec
 * args_spec.new(base, args, templated) (a job per customer, args: [id]),
 * when its args hold no placeholder. Anything else (another key, a
 * duplicate key, a key that needs checking, an item split between two
 * parts) goes through items.call as before. */
#include <stdlib.h>
#include <string.h>

#include <ruby/encoding.h>

#include "rb_kaal.h"

typedef struct line {
    const char *s; /* the content, after the indentation */
    long len;      /* without trailing spaces */
    long indent;
} line;

typedef struct reader {
    const char *text; /* read one line at a time (a million-job file is not split up front) */
    long len, pos;
    line cur;         /* the current significant line, when has_cur */
    int has_cur, first;
    VALUE tokenize;
    VALUE items;     /* nil, or called with each item of a jobs list (see yaml_blocks) */
    VALUE more;       /* nil, or more.call gives the next part of the text (nil at its end) */
    VALUE alike;      /* nil, or the Array items.call fills (see yaml_blocks) */
    VALUE part;       /* the frozen String being read */
    long part_no;     /* how many parts were taken */
    char last_s[64];  /* the last plain scalar handed to tokenize (when short), and its value */
    long last_n;
    VALUE last_value;
    VALUE section;   /* the top-level key being read */
    int depth;       /* mappings and sequences open */
    int jobs_list;   /* the next sequence is the value of a top-level or section "jobs:" */
    int failed; /* outside the subset: the caller falls back to Psych */
} reader;

/* The previous item of a jobs list, for the items written the same way
 * (see alike in yaml_blocks). */
typedef struct item_text {
    VALUE rest;     /* its lines after the key's line, as written (a String), or Qnil */
    long indent;    /* of its "- " line */
    char head[32];  /* its first line up to the key's value ("- key: "), when the key is there */
    long head_len;
    VALUE prefix;   /* or, its "key: " on a later line: its text from the first line's start to the key's value */
    long args_at;   /* where in rest the value of its one "args: [...]" line starts, or -1 */
    long args_end;  /* where in rest that line's "\n" is */
} item_text;

static VALUE node(reader *r, long indent);

static int fail(reader *r)
{
    r->failed = 1;
    return 0;
}

static int is_lower_word(const char *s, long n, const char *word)
{
    long i;
    if ((long)strlen(word) != n) return 0;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != word[i]) return 0;
    }
    return 1;
}

/* -?(0|[1-9][0-9]{0,17}): Psych's INTEGER rule reads it as the decimal
 * number it is, and no earlier rule of its takes it. */
static int decimal_int(const char *s, long n)
{
    long i = s[0] == '-' ? 1 : 0;
    if (n - i < 1 || n - i > 18 || (s[i] == '0' && n - i > 1)) return 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
    }
    return 1;
}

/* A plain scalar (already checked for indicators). */
static VALUE plain(reader *r, const char *s, long n)
{
    long i;
    int simple = (s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_';
    for (i = 0; simple && i < n; i++) simple = (unsigned char)s[i] < 0x80;
    if (simple) {
        if (n <= 5) {
            if (is_lower_word(s, n, "null")) return Qnil;
            if (is_lower_word(s, n, "yes") || is_lower_word(s, n, "true") || is_lower_word(s, n, "on")) return Qtrue;
            if (is_lower_word(s, n, "no") || is_lower_word(s, n, "false") || is_lower_word(s, n, "off"))
                return Qfalse;
        }
        return rb_utf8_str_new(s, n);
    }
    /* a decimal integer as Psych writes one back (no sign but '-', no
     * leading zero, no '_'; what fits a long): its Integer, without the call
     * (a million jobs with args: [<id>]) */
    if (decimal_int(s, n)) return LONG2NUM(strtol(s, NULL, 10));
    /* with a space and no ':' (a cron expression), every rule of Psych's
     * ScalarScanner but the String one needs what it lacks (a time has
     * ':', numbers and dates have no space): a String, without Psych */
    if (memchr(s, ' ', (size_t)n) && !memchr(s, ':', (size_t)n)) return rb_utf8_str_new(s, n);
    /* the same text as the last one (a cron expression on every other
     * line): the same value, a String of its own */
    if (r->last_n > 0 && r->last_n == n && memcmp(r->last_s, s, (size_t)n) == 0)
        return RB_TYPE_P(r->last_value, T_STRING) ? rb_str_dup(r->last_value) : r->last_value;
    r->last_n = 0;
    r->last_value = rb_funcall(r->tokenize, rb_intern("call"), 1, rb_utf8_str_new(s, n));
    if (n <= (long)sizeof r->last_s) {
        memcpy(r->last_s, s, (size_t)n);
        r->last_n = n;
    }
    return RB_TYPE_P(r->last_value, T_STRING) ? rb_str_dup(r->last_value) : r->last_value;
}

/* A mapping key (key_of: [A-Za-z_][\w-]*): an interned String, or fail for
 * the words Psych reads as true, false or nil. */
static VALUE plain_key(reader *r, const char *s, long n)
{
    if (n <= 5 && (is_lower_word(s, n, "null") || is_lower_word(s, n, "yes") || is_lower_word(s, n, "true") ||
                   is_lower_word(s, n, "on") || is_lower_word(s, n, "no") || is_lower_word(s, n, "false") ||
                   is_lower_word(s, n, "off")))
        return fail(r), Qnil;
    return rb_enc_interned_str(s, n, rb_utf8_encoding());
}

/* A scalar (plain or quoted) of n bytes, or fail. stop: characters that end
 * a plain scalar early (inside a flow sequence: ",]"). */
static VALUE scalar(reader *r, const char *s, long n)
{
    long i;
    if (n == 0) return fail(r), Qnil;
    if (s[0] == '"' || s[0] == '\'') {
        char q = s[0];
        if (n < 2 || s[n - 1] != q) return fail(r), Qnil;
        for (i = 1; i < n - 1; i++) {
            if (s[i] == q || (q == '"' && s[i] == '\\')) return fail(r), Qnil;
        }
        return rb_utf8_str_new(s + 1, n - 2);
    }
    /* Indicators and anything that could be a comment, a mapping or a
     * multi-part scalar. */
    if (strchr("[]{},&*!|>%@`#?:-\"'", s[0]) && !(s[0] == '-' && n > 1 && s[1] != ' ')) return fail(r), Qnil;
    if (s[0] == '-' && n > 1 && (s[1] < '0' || s[1] > '9')) return fail(r), Qnil; /* "-x": leave it to Psych */
    for (i = 0; i < n; i++) {
        if (s[i] == ':' && (i + 1 == n || s[i + 1] == ' ')) return fail(r), Qnil;
        if (s[i] == '#' && i > 0 && s[i - 1] == ' ') return fail(r), Qnil;
        if (s[i] == '\t') return fail(r), Qnil;
    }
    return plain(r, s, n);
}

/* "[a, b, 'c']" on one line: Strings and plain scalars without flow
 * indicators; "[]" is an empty list. */
static VALUE flow_seq(reader *r, const char *s, long n)
{
    VALUE out = rb_ary_new();
    long i = 1, end = n - 1;
    if (n < 2 || s[end] != ']') return fail(r), Qnil;
    while (i < end && s[i] == ' ') i++;
    if (i == end) return out;
    while (i < end) {
        long from = i, to;
        if (s[i] == '"' || s[i] == '\'') {
            char q = s[i];
            for (i++; i < end && s[i] != q; i++) {
            }
            if (i == end) return fail(r), Qnil;
            i++;
        } else {
            for (; i < end && s[i] != ',' && s[i] != '[' && s[i] != '{' && s[i] != '}'; i++) {
            }
        }
        to = i;
        while (to > from && s[to - 1] == ' ') to--;
        rb_ary_push(out, scalar(r, s + from, to - from));
        if (r->failed) return Qnil;
        while (i < end && s[i] == ' ') i++;
        if (i < end) {
            if (s[i] != ',') return fail(r), Qnil;
            i++;
            while (i < end && s[i] == ' ') i++;
            if (i == end) return fail(r), Qnil; /* "[a, ]" */
        }
    }
    return out;
}

/* The value written after "key: " or "- ". */
static VALUE inline_value(reader *r, const char *s, long n)
{
    if (s[0] == '[') return flow_seq(r, s, n);
    if (s[0] == '{') {
        if (n == 2 && s[1] == '}') return rb_hash_new();
        return fail(r), Qnil;
    }
    return scalar(r, s, n);
}

/* "key: value" / "key:" at the start of s: the key's length, and where the
 * value starts (vat; n when there is none), or 0. Keys: [A-Za-z_][\w-]*. */
static long key_of(const char *s, long n, long *vat)
{
    long i = 0;
    if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_')) return 0;
    while (i < n && ((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
                     s[i] == '_' || s[i] == '-'))
        i++;
    if (i == n || s[i] != ':') return 0;
    if (i + 1 == n) {
        *vat = n;
        return i;
    }
    if (s[i + 1] != ' ') return 0;
    *vat = i + 2;
    while (*vat < n && s[*vat] == ' ') (*vat)++;
    return i;
}

static int is_item(const line *l) { return l->s[0] == '-' && (l->len == 1 || l->s[1] == ' '); }

/* n, less the spaces before s[n]. */
static long trimmed(const char *s, long n)
{
    while (n > 0 && s[n - 1] == ' ') n--;
    return n;
}

/* Where the comment after a flow list ("[a, 'b # c']  # d") starts, or n.
 * A quote opens a quoted scalar only where an item starts; a comment inside
 * the brackets (the list would go on on the next line) is cut there too, and
 * the reader then refuses the unclosed list. */
static long flow_comment(const char *s, long n)
{
    long i;
    int start = 1;
    for (i = 1; i < n; i++) {
        char c = s[i];
        if (start && c == ' ') continue;
        if (start && (c == '"' || c == '\'')) {
            const char *close = memchr(s + i + 1, c, (size_t)(n - i - 1));
            if (close == NULL) return n;
            i = (long)(close - s);
            start = 0;
            continue;
        }
        start = c == ',' || c == '[' || c == '{';
        if (c == '#' && s[i - 1] == ' ') return i;
    }
    return n;
}

/* The length of the value written at s (n bytes, after "key: " or "- ")
 * without the comment after it, as YAML reads it: a '#' after a space, or
 * first, starts a comment; inside quotes it does not. A quoted value with
 * an escape or a second quote is cut where its first closing quote says:
 * the reader refuses what is left (Psych then reads the line). */
static long value_len(const char *s, long n)
{
    long i = 1;
    if (n == 0 || s[0] == '#') return 0;
    if (s[0] == '"' || s[0] == '\'') {
        const char *close = memchr(s + 1, s[0], (size_t)(n - 1));
        if (close == NULL) return n;
        i = (long)(close - s) + 1;
    } else if (s[0] == '[' || s[0] == '{') {
        return trimmed(s, flow_comment(s, n));
    }
    for (; i < n; i++) {
        if (s[i] == '#' && s[i - 1] == ' ') return trimmed(s, i);
    }
    return n;
}

/* A line's length without the comment after its value (s: after the
 * indentation, n: without trailing spaces). The value starts after any
 * "- " and a "key: ". */
static long line_len(const char *s, long n)
{
    long at = 0, vat = 0;
    while (at < n && s[at] == '-' && (at + 1 == n || s[at + 1] == ' ')) {
        at++;
        while (at < n && s[at] == ' ') at++;
    }
    if (at < n && key_of(s + at, n - at, &vat) > 0) at += vat;
    if (at >= n || !memchr(s + at, '#', (size_t)(n - at))) return n; /* no comment (most lines) */
    return trimmed(s, at + value_len(s + at, n - at));
}

/* Takes a UTF-8 String as the text being read; 0 when it is not one. */
static int take_part(reader *r, VALUE part)
{
    if (!RB_TYPE_P(part, T_STRING) || rb_enc_get_index(part) != rb_utf8_encindex() ||
        rb_enc_str_coderange(part) == ENC_CODERANGE_BROKEN)
        return 0;
    /* the text may not change while it is read: a frozen copy */
    r->part = rb_str_new_frozen(part);
    r->text = RSTRING_PTR(r->part);
    r->len = RSTRING_LEN(r->part);
    r->pos = 0;
    r->part_no++;
    return 1;
}

/* The next part of the text (when the caller gives it in parts, each
 * ending with a whole line): 0 at the end, or when the part is not valid
 * UTF-8 (then failed is set). */
static int next_part(reader *r)
{
    VALUE part;
    if (NIL_P(r->more)) return 0;
    part = rb_funcall(r->more, rb_intern("call"), 0);
    if (NIL_P(part)) return 0;
    if (!take_part(r, part)) return fail(r);
    return 1;
}

/* The current significant line (read from the text when the previous one
 * was consumed), or NULL at the end or when the text is outside the subset
 * (then failed is set). */
static line *current(reader *r)
{
    const char *s = r->text;
    long n = r->len;
    if (r->has_cur) return &r->cur;
    while (!r->failed && (r->pos < n || next_part(r))) {
        s = r->text;
        n = r->len;
        long from = r->pos, to, ind = 0;
        const char *nl = memchr(s + from, '\n', (size_t)(n - from));
        to = nl ? nl - s : n;
        r->pos = to + 1;
        if (memchr(s + from, '\r', (size_t)(to - from)) || memchr(s + from, '\t', (size_t)(to - from)))
            return fail(r), NULL;
        while (from + ind < to && s[from + ind] == ' ') ind++;
        while (to > from + ind && s[to - 1] == ' ') to--;
        if (to == from + ind || s[from + ind] == '#') continue; /* blank or comment */
        if (r->first && to - from == 3 && memcmp(s + from, "---", 3) == 0) {
            r->first = 0;
            continue;
        }
        r->first = 0;
        if (ind == 0 && to - from >= 3 && (memcmp(s + from, "---", 3) == 0 || memcmp(s + from, "...", 3) == 0))
            return fail(r), NULL; /* another document */
        r->cur.s = s + from + ind;
        r->cur.len = line_len(s + from + ind, to - from - ind);
        r->cur.indent = ind;
        r->has_cur = 1;
        return &r->cur;
    }
    return NULL;
}

/* The current line is read. */
static void advance(reader *r) { r->has_cur = 0; }

/* The nested value of "key:" or "- " with nothing after it: a block further
 * in, a sequence at the same indentation (YAML's compact form, only under a
 * key), or nil. */
static VALUE nested(reader *r, long indent, int under_key)
{
    line *l = current(r);
    if (l && l->indent > indent) return node(r, l->indent);
    if (l && under_key && l->indent == indent && is_item(l)) return node(r, indent);
    return Qnil;
}

static VALUE mapping(reader *r, long indent)
{
    VALUE out = rb_hash_new();
    int depth = ++r->depth;
    r->jobs_list = 0;
    line *l;
    while (!r->failed && (l = current(r)) != NULL) {
        long klen, vat = 0;
        VALUE key, value;
        if (l->indent < indent) break;
        if (l->indent > indent || is_item(l)) return fail(r), Qnil;
        klen = key_of(l->s, l->len, &vat);
        if (klen == 0) return fail(r), Qnil;
        key = plain_key(r, l->s, klen);
        if (r->failed) return Qnil; /* true:, null: as keys */
        advance(r);
        if (depth == 1) r->section = key;
        r->jobs_list = depth <= 2 && RSTRING_LEN(key) == 4 && memcmp(RSTRING_PTR(key), "jobs", 4) == 0;
        value = vat < l->len ? inline_value(r, l->s + vat, l->len - vat) : nested(r, indent, 1);
        r->jobs_list = 0;
        if (r->failed) return Qnil;
        rb_hash_aset(out, key, value);
    }
    r->depth--;
    return out;
}

/* An item of a jobs list goes through items.call(section, index, item)
 * (section: nil for a top-level "jobs:"), and what it returns is kept. */
static VALUE item(reader *r, VALUE list, VALUE value, int jobs)
{
    if (!jobs || r->failed) return value;
    return rb_funcall(r->items, rb_intern("call"), 3, r->depth == 2 ? Qnil : r->section, LONG2NUM(RARRAY_LEN(list)),
                      value);
}

/* Whether the text at e starts a line that ends an item whose "- " is at
 * indent: one no further in, not blank and not a comment (those could be
 * followed by more of the item), or the end of the last part. */
static int ends_item(const reader *r, long e, long indent)
{
    long i = e;
    if (e >= r->len) return e == r->len && NIL_P(r->more);
    while (i < r->len && r->text[i] == ' ') i++;
    if (i == r->len || r->text[i] == '\n' || r->text[i] == '#') return 0;
    return i - e <= indent;
}

/* Whether s holds "{{" or "}}". */
static int has_braces(const char *s, long n)
{
    long i;
    for (i = 0; i + 1 < n; i++) {
        if ((s[i] == '{' || s[i] == '}') && s[i + 1] == s[i]) return 1;
    }
    return 0;
}

/* The args of the current item when it is written as the previous one
 * (t) but for its key's value and its args line's value: a frozen Array
 * without placeholders; Qundef when the item is not such (or its args need
 * items.call). from: where the item's text after its key's line starts;
 * e: where the item ends. */
static VALUE other_args(reader *r, const item_text *t, long from, long *e)
{
    const char *text = r->text, *rest = RSTRING_PTR(t->rest), *nl;
    long tail = RSTRING_LEN(t->rest) - t->args_end, v = from + t->args_at, n, i;
    VALUE args;
    if (t->args_at < 0 || v > r->len || memcmp(text + from, rest, (size_t)t->args_at) != 0) return Qundef;
    nl = memchr(text + v, '\n', (size_t)(r->len - v));
    if (nl == NULL) return Qundef;
    n = (long)(nl - text) - v;
    *e = (long)(nl - text) + tail;
    if (*e > r->len || memcmp(nl, rest + t->args_end, (size_t)tail) != 0) return Qundef;
    n = trimmed(text + v, n);
    n = value_len(text + v, n); /* "args: [7]  # a comment" */
    /* what the reader refuses on any line, and a value "args: " does not start */
    if (n < 2 || text[v] != '[' || memchr(text + v, '\t', (size_t)n) || memchr(text + v, '\r', (size_t)n))
        return Qundef;
    args = flow_seq(r, text + v, n);
    if (r->failed) return Qundef;
    for (i = 0; i < RARRAY_LEN(args); i++) {
        VALUE a = RARRAY_AREF(args, i);
        if (RB_TYPE_P(a, T_STRING) && has_braces(RSTRING_PTR(a), RSTRING_LEN(a)))
            return Qundef; /* a placeholder (or a mistake) for Kaal::Placeholders */
    }
    return rb_obj_freeze(args);
}

/* When the current line's item is written as the previous one (t, whose
 * key is on a later line) up to its key's value: where that value starts
 * (*kv) and its length without a comment (*kn), and the return value:
 * where the item's text after the key's line starts. -1 when it is not
 * written so, or its key's line is not one the reader takes whole. */
static long later_key(const reader *r, const item_text *t, const line *l, long *kv, long *kn)
{
    long start = (long)(l->s - r->text) - l->indent, plen = RSTRING_LEN(t->prefix), n;
    const char *v, *nl;
    if (l->indent != t->indent || start + plen >= r->len ||
        memcmp(r->text + start, RSTRING_PTR(t->prefix), (size_t)plen) != 0)
        return -1;
    *kv = start + plen;
    v = r->text + *kv;
    nl = memchr(v, '\n', (size_t)(r->len - *kv));
    if (nl == NULL || *v == ' ') return -1;
    n = trimmed(v, (long)(nl - v));
    if (memchr(v, '\t', (size_t)n) || memchr(v, '\r', (size_t)n)) return -1; /* as current() would */
    *kn = value_len(v, n);
    return *kn > 0 ? (long)(nl - r->text) + 1 : -1;
}

/* Reads the current line's item when it is written as the previous one
 * but for its key's value (t), or also its args (see alike in
 * yaml_blocks): the Job is made and stored as the alike Array says, and
 * pushed to out. 0 (nothing read) when it is not, or when the job needs
 * items.call (a key to check, a duplicate key). */
static int alike_item(reader *r, VALUE out, const item_text *t, const line *l)
{
    VALUE key, job, table, spec, args = Qundef, with[3];
    long e, rest_len, from = r->pos, kv, kn;
    if (NIL_P(t->rest) || RARRAY_LEN(r->alike) < 3) return 0;
    if (NIL_P(t->prefix)) {
        if (l->indent != t->indent || l->len <= t->head_len || memcmp(l->s, t->head, (size_t)t->head_len) != 0 ||
            l->s[t->head_len] == ' ')
            return 0;
        kv = (long)(l->s - r->text) + t->head_len;
        kn = l->len - t->head_len;
    } else if ((from = later_key(r, t, l, &kv, &kn)) < 0) {
        return 0;
    }
    rest_len = RSTRING_LEN(t->rest);
    e = from + rest_len;
    if (e > r->len || memcmp(r->text + from, RSTRING_PTR(t->rest), (size_t)rest_len) != 0) {
        if (RARRAY_LEN(r->alike) != 6) return 0;
        args = other_args(r, t, from, &e);
        if (r->failed) return 1; /* as the item's own reading would */
        if (args == Qundef) return 0;
    }
    if (!ends_item(r, e, l->indent)) return 0;
    /* the same bytes at the same place: the same fields, but the key (and args) */
    key = inline_value(r, r->text + kv, kn);
    if (r->failed) return 1;
    table = RARRAY_AREF(r->alike, 2);
    if (!RB_TYPE_P(key, T_STRING) || !RB_TYPE_P(table, T_HASH) || rb_hash_lookup2(table, key, Qundef) != Qundef)
        return 0;
    spec = RARRAY_AREF(r->alike, 1);
    if (args != Qundef) {
        with[0] = RARRAY_AREF(r->alike, 4);
        with[1] = args;
        with[2] = RARRAY_AREF(r->alike, 5);
        spec = rb_class_new_instance(3, with, RARRAY_AREF(r->alike, 3));
    }
    job = kaal_job_alike(RARRAY_AREF(r->alike, 0), rb_obj_freeze(key), spec);
    if (job == Qundef) return 0;
    rb_hash_aset(table, key, job);
    rb_ary_push(out, job);
    r->has_cur = 0;
    r->pos = e;
    return 1;
}

/* How many lines of text[from, end) start with name (like "key:") at
 * indent; at: where the last one's name starts. */
static int field_lines(const reader *r, long from, long end, long indent, const char *name, long *at)
{
    long i = from, n = (long)strlen(name);
    int count = 0;
    while (i < end) {
        const char *nl;
        long ind = 0;
        while (i + ind < end && r->text[i + ind] == ' ') ind++;
        if (ind == indent && end - i - ind >= n && memcmp(r->text + i + ind, name, (size_t)n) == 0) {
            count++;
            *at = i + ind;
        }
        nl = memchr(r->text + i, '\n', (size_t)(end - i));
        if (nl == NULL) break;
        i = (long)(nl - r->text) + 1;
    }
    return count;
}

/* Where the value of the one "args: [...]" line of text[from, end) (a
 * mapping's at indent) starts, and where its line ends (*nl_at): offsets
 * from from; -1 when there is no such line. */
static long args_value(const reader *r, long from, long end, long indent, long *nl_at)
{
    long at = 0, v;
    const char *nl;
    if (field_lines(r, from, end, indent, "args:", &at) != 1) return -1;
    v = at + 5;
    if (v >= end || r->text[v] != ' ') return -1;
    while (v < end && r->text[v] == ' ') v++;
    nl = memchr(r->text + at, '\n', (size_t)(end - at));
    if (nl == NULL || v >= end || r->text[v] != '[') return -1;
    *nl_at = (long)(nl - r->text) - from;
    return v - from;
}

/* The item's text from its first line's start (start) to the value of its
 * "key:" line (key_at: where "key" starts) as t's prefix; returns where the
 * line after the key's starts, or -1 when the key has no value there. */
static long keep_prefix(const reader *r, item_text *t, long start, long key_at, long end)
{
    long v = key_at + 4;
    const char *nl = memchr(r->text + v, '\n', (size_t)(end - v));
    if (nl == NULL || r->text[v] != ' ') return -1;
    while (r->text[v] == ' ') v++;
    if (r->text + v >= nl || r->text[v] == '#') return -1;
    t->prefix = rb_str_new(r->text + start, v - start);
    return (long)(nl - r->text) + 1;
}

/* After an item read by items.call: keeps its text (t) when the following
 * items may be alike it: items.call filled the alike Array, the item's first
 * line is "- key: value" (at: where "key" starts, head: where its value
 * does; 0 for another first line, then its one "key: value" line further
 * on), and the whole item is in one part (part_no, from: where its second
 * line starts). */
static void keep_item(reader *r, item_text *t, const line *first, long at, long head, long part_no, long from)
{
    long end, key_at = 0, keys;
    t->rest = Qnil;
    t->prefix = Qnil;
    if (r->failed || NIL_P(r->alike) || RARRAY_LEN(r->alike) < 3 || head > (long)sizeof t->head ||
        r->part_no != part_no || !r->has_cur)
        return;
    end = (long)(r->cur.s - r->text) - r->cur.indent;
    if (end < from) return;
    keys = field_lines(r, from, end, first->indent + at, "key:", &key_at);
    if (head > 0) {
        if (keys > 0) return; /* another "key:" of the item's own (the last one counts): not alike */
        memcpy(t->head, first->s, (size_t)head);
        t->head_len = head;
    } else if (keys != 1 || (from = keep_prefix(r, t, (long)(first->s - r->text) - first->indent, key_at, end)) < 0) {
        return;
    }
    t->args_at = args_value(r, from, end, first->indent + at, &t->args_end);
    t->rest = rb_str_new(r->text + from, end - from);
    t->indent = first->indent;
}

static VALUE sequence(reader *r, long indent)
{
    VALUE out = rb_ary_new();
    int jobs = r->jobs_list && !NIL_P(r->items);
    item_text t;
    t.rest = Qnil;
    t.prefix = Qnil;
    r->jobs_list = 0;
    r->depth++;
    line *l;
    while (!r->failed && (l = current(r)) != NULL) {
        long at = 1, klen, vat = 0;
        /* A line at this indentation that is not an item ends a compact
         * list ("key:" then "- x" lines at the key's indentation); where that
         * is not allowed, the caller finds the line out of place. */
        if (l->indent < indent || (l->indent == indent && !is_item(l))) break;
        if (l->indent > indent) return fail(r), Qnil;
        if (jobs && alike_item(r, out, &t, l)) continue;
        while (at < l->len && l->s[at] == ' ') at++;
        if (at == l->len) return fail(r), Qnil; /* "-" alone: leave it to Psych */
        klen = key_of(l->s + at, l->len - at, &vat);
        if (klen > 0) {
            /* "- key: value": a mapping whose keys line up with this key */
            line first = *l;
            long part_no = r->part_no, from = r->pos;
            long head = klen == 3 && memcmp(l->s + at, "key", 3) == 0 && vat < l->len - at ? at + vat : 0;
            l->indent += at;
            l->s += at;
            l->len -= at;
            rb_ary_push(out, item(r, out, mapping(r, l->indent), jobs));
            if (jobs) keep_item(r, &t, &first, at, head, part_no, from);
        } else {
            advance(r);
            t.rest = Qnil; /* the next item is compared with this one, which has no template */
            t.prefix = Qnil;
            rb_ary_push(out, item(r, out, inline_value(r, l->s + at, l->len - at), jobs));
        }
    }
    r->depth--;
    return out;
}

static VALUE node(reader *r, long indent)
{
    return is_item(current(r)) ? sequence(r, indent) : mapping(r, indent);
}

static VALUE parse(reader *r)
{
    line *first = current(r);
    VALUE out;
    if (first == NULL || first->indent != 0 || is_item(first)) return Qnil; /* kaal's files are mappings */
    out = mapping(r, 0);
    return r->failed || current(r) != NULL ? Qnil : out;
}

static VALUE native_yaml_blocks(int argc, VALUE *argv, VALUE self)
{
    reader r;
    VALUE text, tokenize, items, more, alike, out;
    (void)self;
    rb_scan_args(argc, argv, "23", &text, &tokenize, &items, &more, &alike);
    StringValue(text);
    if (RSTRING_LEN(text) >= 3 && memcmp(RSTRING_PTR(text), "\xEF\xBB\xBF", 3) == 0) return Qnil; /* BOM */
    memset(&r, 0, sizeof r);
    r.tokenize = tokenize;
    r.items = items;
    r.more = more;
    r.alike = RB_TYPE_P(alike, T_ARRAY) ? alike : Qnil;
    r.section = Qnil;
    r.last_value = Qnil;
    r.first = 1;
    if (!take_part(&r, text)) return Qnil;
    out = parse(&r);
    RB_GC_GUARD(r.part);
    return out;
}

void kaal_init_yaml(void)
{
    rb_define_module_function(kaal_mNative, "yaml_blocks", native_yaml_blocks, -1);
}

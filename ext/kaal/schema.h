/* kaal: SQL schema, one definition per dialect, in numbered steps.
 * backend.c builds each dialect's statements from one description of every
 * table (the dialects differ only in spelling); the backend's migrate runs
 * the steps a database lacks, and the binding exposes them as
 * Kaal::Native.schema_steps(dialect) so the Rails generator writes one
 * migration per step, producing the same tables (docs/architecture.md,
 * "Schema steps").
 *
 * Step 1 (the first release's tables; every row carries its namespace;
 * times are Unix seconds, BIGINT):
 *   kaal_dispatches   (namespace, job_key, fire_time) primary key; status
 *                     'claimed'|'dispatched'|'failed', node, error, claim_token,
 *                     claimed_at, updated_at; index (namespace, fire_time)
 *   kaal_delayed_jobs (namespace, job_id) primary key; run_at_ms BIGINT,
 *                     job_class, queue (NULL), args (JSON text), created_at;
 *                     index (namespace, run_at_ms)
 *   kaal_job_states   (namespace, job_key) primary key; enabled, updated_at
 *   kaal_nodes        (namespace, node) primary key; info (JSON text), last_seen
 * Step 2: kaal_schema_steps, kaal_schedules, kaal_schedule_versions (see
 * backend.c).
 * namespace, job_key, job_id, node, job_class, queue: VARCHAR(255).
 *
 * Every statement is idempotent (IF NOT EXISTS, insert-unless-present). The
 * version of a database is the highest step recorded in kaal_schema_steps,
 * or, when higher, the highest step whose marker table exists (a database
 * from the first release has no kaal_schema_steps; one loaded from a Rails
 * schema dump has the tables without the rows). */
#ifndef KAAL_SCHEMA_H
#define KAAL_SCHEMA_H

#include <stdint.h>

#define KAAL_SCHEMA_VERSION 2

/* kaal_schema_markers[i]: a table created by step i + 1. */
extern const char *const kaal_schema_markers[KAAL_SCHEMA_VERSION];

/* markers[i]: 1 when kaal_schema_markers[i] exists; recorded: the highest
 * step in kaal_schema_steps (0 without the table). The database's version. */
int kaal_schema_version_of(const int *markers, int64_t recorded);

/* The version of a SQL store, read through its scalar: sql (with arg as its
 * one parameter, or none when arg is NULL) returning one integer, *out 0
 * for no row or NULL. has_table: the dialect's query, 1 (or a count > 0)
 * when the table named by its parameter exists. */
struct kaal_backend;
struct kaal_error;
typedef int (*kaal_scalar_fn)(struct kaal_backend *b, const char *sql, const char *arg, int64_t *out,
                              struct kaal_error *err);
int kaal_schema_version_read(struct kaal_backend *b, kaal_scalar_fn scalar, const char *has_table,
                             int *version, struct kaal_error *err);

/* kaal_schema_<dialect>: step 1's statements (NULL-terminated);
 * kaal_schema_steps_<dialect>[i]: step i + 1's. */
#ifdef KAAL_HAVE_SQLITE
extern const char *const kaal_schema_sqlite[];
extern const char *const *const kaal_schema_steps_sqlite[KAAL_SCHEMA_VERSION];
#endif
#ifdef KAAL_HAVE_POSTGRES
extern const char *const kaal_schema_postgres[];
extern const char *const *const kaal_schema_steps_postgres[KAAL_SCHEMA_VERSION];
#endif
#ifdef KAAL_HAVE_MYSQL
extern const char *const kaal_schema_mysql[];
extern const char *const *const kaal_schema_steps_mysql[KAAL_SCHEMA_VERSION];
#endif

#endif

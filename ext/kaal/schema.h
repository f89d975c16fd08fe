/* kaal: SQL schema, one definition per dialect. backend.c builds each
 * dialect's NULL-terminated list of idempotent DDL statements from one
 * description of every table (the dialects differ only in spelling); the
 * backend's migrate runs them, and the binding exposes them as
 * Kaal::Native.schema(dialect) so the Rails generator writes migrations
 * producing the same tables.
 *
 * Tables (every row carries its namespace; times are Unix seconds, BIGINT):
 *   kaal_dispatches   (namespace, job_key, fire_time) primary key; status
 *                     'claimed'|'dispatched'|'failed', node, error, claim_token,
 *                     claimed_at, updated_at; index (namespace, fire_time)
 *   kaal_delayed_jobs (namespace, job_id) primary key; run_at_ms BIGINT,
 *                     job_class, queue (NULL), args (JSON text), created_at;
 *                     index (namespace, run_at_ms)
 *   kaal_job_states   (namespace, job_key) primary key; enabled, updated_at
 *   kaal_nodes        (namespace, node) primary key; info (JSON text), last_seen
 * namespace, job_key, job_id, node, job_class, queue: VARCHAR(255). */
#ifndef KAAL_SCHEMA_H
#define KAAL_SCHEMA_H

#ifdef KAAL_HAVE_SQLITE
extern const char *const kaal_schema_sqlite[];
#endif
#ifdef KAAL_HAVE_POSTGRES
extern const char *const kaal_schema_postgres[];
#endif
#ifdef KAAL_HAVE_MYSQL
extern const char *const kaal_schema_mysql[];
#endif

#endif

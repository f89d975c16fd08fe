# frozen_string_literal: true

# kaal's SQLite claim (one prepared INSERT ... ON CONFLICT DO NOTHING
# RETURNING per batch, mapped back to the input pairs in C, without the GVL)
# against the sqlite3 gem running the same statement, prepared once per batch
# size, on a second connection to the same WAL file (same pragmas, same
# table, its own namespace).
require "tmpdir"

KaalBench::Claims.register("sqlite") do |c|
  c.needs("sqlite", "sqlite3")
  dir = raw = nil
  statements = {}

  c.setup do |ns|
    dir = Dir.mktmpdir("kaal-bench-sqlite")
    path = File.join(dir, "kaal.sqlite3")
    c.backend = Kaal::Backend.build(:sqlite, namespace: ns, config: { path: path }).tap(&:migrate)
    raw = SQLite3::Database.new(path)
    raw.busy_timeout = 5000
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=NORMAL")
  end

  c.raw("sqlite3 gem, same INSERT ... ON CONFLICT DO NOTHING RETURNING") do |pairs|
    stmt = statements[pairs.size] ||= raw.prepare(
      "INSERT INTO kaal_dispatches (namespace, job_key, fire_time, status, node, claimed_at, " \
      "updated_at) VALUES " +
      Array.new(pairs.size) { "(?, ?, ?, 'claimed', ?, ?, ?)" }.join(", ") +
      " ON CONFLICT DO NOTHING RETURNING job_key, fire_time"
    )
    now = Time.now.to_i
    binds = []
    pairs.each { |key, fire| binds.push(c.raw_namespace, key, fire, "bench", now, now) }
    stmt.execute(*binds).to_a.size
  end

  c.teardown do
    statements.each_value(&:close)
    raw&.close
    c.backend&.close # before the directory goes
    c.backend = nil
    FileUtils.rm_rf(dir) if dir
  end
end

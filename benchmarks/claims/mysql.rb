# frozen_string_literal: true

# kaal's MySQL claim (a prepared multi-row INSERT IGNORE carrying a random
# claim token, then a prepared SELECT reading back the rows with that token,
# mapped back to pairs in C) against the mysql2 gem doing the same two
# prepared statements.
require "securerandom"

KaalBench::Claims.register("mysql") do |c|
  url = c.needs("mysql", "mysql2", "uri", url_env: "KAAL_TEST_MYSQL_URL")
  raw = readback = nil
  inserts = {}

  c.setup do |ns|
    c.backend = Kaal::Backend.build(:mysql, namespace: ns, config: { url: url }).tap(&:migrate)
    u = URI.parse(url)
    raw = Mysql2::Client.new(host: u.host, port: u.port, username: u.user, password: u.password,
                             database: u.path.delete_prefix("/"), encoding: "utf8mb4")
    readback = raw.prepare("SELECT job_key, fire_time FROM kaal_dispatches" \
                           " WHERE namespace = ? AND fire_time BETWEEN ? AND ? AND claim_token = ?")
  end

  c.raw("mysql2 gem, same prepared INSERT IGNORE + token read-back") do |pairs|
    stmt = inserts[pairs.size] ||= raw.prepare(
      "INSERT IGNORE INTO kaal_dispatches" \
      " (namespace, job_key, fire_time, status, node, claim_token, claimed_at, updated_at) VALUES " +
      Array.new(pairs.size, "(?, ?, ?, 'claimed', ?, ?, ?, ?)").join(",")
    )
    token = SecureRandom.hex(16)
    now = Time.now.to_i
    stmt.execute(*pairs.flat_map { |k, f| [c.raw_namespace, k, f, "bench", token, now, now] })
    fires = pairs.map(&:last)
    readback.execute(c.raw_namespace, fires.min, fires.max, token).count
  end

  c.teardown do
    if raw
      [c.namespace, c.raw_namespace].each do |n|
        raw.query("DELETE FROM kaal_dispatches WHERE namespace = '#{raw.escape(n)}'")
      end
      raw.close
    end
  end
end

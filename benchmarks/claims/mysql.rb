# frozen_string_literal: true

# kaal's MySQL claim (a prepared multi-row INSERT IGNORE carrying a random
# claim token, then a prepared SELECT reading back the rows with that token,
# mapped back to pairs in C) against the mysql2 gem doing the same two
# prepared statements.
require "securerandom"

KaalBench::Claims.register("mysql") do |c|
  url = ENV.fetch("KAAL_TEST_MYSQL_URL", "")
  c.skip "set KAAL_TEST_MYSQL_URL (bin/services start mysql)" if url.empty?
  c.skip "mysql backend not built" unless Kaal::Native.backends.include?("mysql")
  begin
    require "mysql2"
    require "uri"
  rescue LoadError
    c.skip "gem mysql2 not installed"
  end

  backend = raw = raw_ns = kaal_ns = readback = nil
  inserts = {}

  c.setup do |ns|
    kaal_ns = ns
    raw_ns = "#{ns}-raw"
    backend = Kaal::Backend.build(:mysql, namespace: ns, config: { url: url })
    backend.migrate
    u = URI.parse(url)
    raw = Mysql2::Client.new(host: u.host, port: u.port, username: u.user, password: u.password,
                             database: u.path.delete_prefix("/"), encoding: "utf8mb4")
    readback = raw.prepare("SELECT job_key, fire_time FROM kaal_dispatches" \
                           " WHERE namespace = ? AND fire_time BETWEEN ? AND ? AND claim_token = ?")
  end

  c.kaal do |pairs|
    backend.claim(pairs, lease_ms: 60_000, node: "bench", now: Time.now).count(true)
  end

  c.raw("mysql2 gem, same prepared INSERT IGNORE + token read-back") do |pairs|
    stmt = inserts[pairs.size] ||= raw.prepare(
      "INSERT IGNORE INTO kaal_dispatches" \
      " (namespace, job_key, fire_time, status, node, claim_token, claimed_at, updated_at) VALUES " +
      Array.new(pairs.size, "(?, ?, ?, 'claimed', ?, ?, ?, ?)").join(",")
    )
    token = SecureRandom.hex(16)
    now = Time.now.to_i
    stmt.execute(*pairs.flat_map { |k, f| [raw_ns, k, f, "bench", token, now, now] })
    fires = pairs.map(&:last)
    readback.execute(raw_ns, fires.min, fires.max, token).count
  end

  c.teardown do
    if raw
      [kaal_ns, raw_ns].each do |n|
        raw.query("DELETE FROM kaal_dispatches WHERE namespace = '#{raw.escape(n)}'")
      end
      raw.close
    end
    backend&.close
  end
end

# frozen_string_literal: true

# kaal's PostgreSQL claim (one prepared INSERT ... SELECT FROM unnest($2::text[],
# $3::bigint[]) ON CONFLICT DO NOTHING RETURNING, rows mapped back to pairs in
# C) against the pg gem sending the same prepared statement, with the arrays
# encoded by PG::TextEncoder::Array, and counting the returned rows.
KaalBench::Claims.register("postgres") do |c|
  url = c.needs("postgres", "pg", url_env: "KAAL_TEST_POSTGRES_URL")
  sql = "INSERT INTO kaal_dispatches (namespace, job_key, fire_time, status, node, claimed_at, updated_at)" \
        " SELECT $1, t.k, t.f, 'claimed', $4, $5, $5 FROM unnest($2::text[], $3::bigint[]) AS t(k, f)" \
        " ON CONFLICT DO NOTHING RETURNING job_key, fire_time"
  raw = text_array = int_array = nil

  c.setup do |ns|
    c.backend = Kaal::Backend.build(:postgres, namespace: ns, config: { url: url }).tap(&:migrate)
    raw = PG.connect(url)
    raw.prepare("claim", sql)
    text_array = PG::TextEncoder::Array.new(elements_type: PG::TextEncoder::String.new)
    int_array = PG::TextEncoder::Array.new(elements_type: PG::TextEncoder::Integer.new)
  end

  c.raw("pg gem, same prepared INSERT ... unnest ... RETURNING") do |pairs|
    keys = text_array.encode(pairs.map(&:first))
    fires = int_array.encode(pairs.map(&:last))
    raw.exec_prepared("claim", [c.raw_namespace, keys, fires, "bench", Time.now.to_i]).ntuples
  end

  c.teardown do
    if raw
      raw.exec_params("DELETE FROM kaal_dispatches WHERE namespace = $1 OR namespace = $2",
                      [c.namespace, c.raw_namespace])
      raw.close
    end
  end
end

# frozen_string_literal: true

# Several real `kaal start` processes on one PostgreSQL database, one of them
# SIGKILLed and restarted every few seconds: no (job key, fire time) may run
# twice, and nearly every second of every job must still run. The record is
# written by the jobs themselves (see spec/support/multi_process.rb).
RSpec.describe "kaal start on PostgreSQL with nodes killed at random", :integration do
  let(:url) { ENV.fetch("KAAL_TEST_POSTGRES_URL", "") }
  let(:duration) { Float(ENV.fetch("KAAL_MP_SECONDS", "30")) }

  def explain(result)
    ([result.summary] + result.crashes + result.node_logs.map { |n, log| "#{n}:\n#{log}" }).join("\n---\n")
  end

  before do
    reason =
      if !Kaal::Native.backends.include?("postgres") then "the postgres backend is not compiled into this build"
      elsif url.empty? then "KAAL_TEST_POSTGRES_URL is not set (bin/services start postgres)"
      end
    if reason
      raise "#{reason} (KAAL_REQUIRE_SERVICES=1)" if ENV["KAAL_REQUIRE_SERVICES"] == "1"

      skip reason
    end
    # the tables exist before the nodes start (as after `kaal migrate`)
    handle = Kaal::Backend.build(:postgres, namespace: "migrate", config: { url: url })
    handle.migrate
    handle.close
  end

  it "runs every (key, fire time) at most once and keeps >= 90% coverage" do
    result = Kaal::Spec::MultiProcess.run(backend: "postgres", backend_config: { "url" => url },
                                          nodes: 3, jobs: 5, duration: duration)
    puts "\n  #{result.summary}"

    expect(result.crashes).to be_empty, -> { explain(result) }
    expect(result.kills).to be >= [(duration / 8).floor, 1].max
    expect(result.dispatches).to be > 0, -> { explain(result) }
    expect(result.duplicates).to be_empty, -> { explain(result) }
    expect(result.coverage).to be >= 90.0, -> { explain(result) }
  end

  # The database becomes unreachable for a few seconds under running nodes:
  # their login role is locked out and every session of it terminated. The
  # nodes must survive, run nothing while they cannot claim (fail closed),
  # catch the missed seconds up from the lookback window once they can log
  # in again, and still run no pair twice.
  it "fails closed while the database is unreachable and catches up without duplicates" do
    require "pg"
    admin = PG.connect(url)
    role = "kaal_outage_#{Process.pid}"
    admin.exec("CREATE ROLE #{role} LOGIN")
    admin.exec("GRANT SELECT, INSERT, UPDATE, DELETE ON kaal_dispatches, kaal_delayed_jobs, " \
               "kaal_job_states, kaal_nodes TO #{role}")
    node_url = url.sub(%r{//[^@/]*@}, "//#{role}@")
    cut = lambda do
      admin.exec("ALTER ROLE #{role} NOLOGIN")
      admin.exec_params("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", [role])
    end
    result = Kaal::Spec::MultiProcess.run(
      backend: "postgres", backend_config: { "url" => node_url }, nodes: 2, jobs: 3, duration: 20,
      kill_every: nil, events: [[7, "database cut", cut],
                                [11, "database back", -> { admin.exec("ALTER ROLE #{role} LOGIN") }]]
    )
    down = result.events.to_h
    puts "\n  outage: #{result.summary}"

    expect(result.crashes).to be_empty, -> { explain(result) }
    expect(result.duplicates).to be_empty, -> { explain(result) }
    ran_while_down = result.records.select do |*, ran_at|
      ran_at > down.fetch("database cut").to_f + 1.0 && ran_at < down.fetch("database back").to_f
    end
    expect(ran_while_down).to be_empty, -> { explain(result) }
    missed = result.records.select { |_, fire, *| fire.between?(down["database cut"].to_i + 1, down["database back"].to_i - 1) }
    expect(missed).not_to be_empty, -> { explain(result) } # the outage's seconds were caught up ...
    expect(missed.map(&:last).min).to be >= down["database back"].to_f # ... after it came back
    expect(result.coverage).to be >= 90.0, -> { explain(result) }
  ensure
    if admin
      admin.exec("ALTER ROLE #{role} LOGIN")
      admin.exec_params("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", [role])
      sleep 0.2
      admin.exec("REASSIGN OWNED BY #{role} TO CURRENT_USER")
      admin.exec("DROP OWNED BY #{role}")
      admin.exec("DROP ROLE IF EXISTS #{role}")
      admin.close
    end
  end
end

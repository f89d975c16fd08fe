# frozen_string_literal: true

# Several real `kaal start` processes on one PostgreSQL database, one of them
# SIGKILLed and restarted every few seconds: no (job key, fire time) may run
# twice, and nearly every second of every job must still run. The record is
# written by the jobs themselves (see spec/support/multi_process.rb).
RSpec.describe "kaal start on PostgreSQL with nodes killed at random", :integration do
  include Kaal::Spec::MultiProcess::Examples
  kaal_backend_for :postgres

  before { backend_factory.call("migrate") } # the tables exist before the nodes start (as after `kaal migrate`)

  it "runs every (key, fire time) at most once and keeps >= 90% coverage" do
    expect_random_kills_survived("postgres", { "url" => kaal_backend_url })
  end

  # The database becomes unreachable for a few seconds under running nodes:
  # their login role is locked out and every session of it terminated.
  it "fails closed while the database is unreachable and catches up without duplicates" do
    require "pg"
    admin = PG.connect(kaal_backend_url)
    role = "kaal_outage_#{Process.pid}"
    admin.exec("CREATE ROLE #{role} LOGIN")
    # Every kaal table, whatever the schema step (a list would miss the next step's tables).
    admin.exec("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO #{role}")
    terminate_all = lambda do
      admin.exec_params("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", [role])
    end
    cut = lambda do
      admin.exec("ALTER ROLE #{role} NOLOGIN")
      terminate_all.call
    end
    expect_outage_survived("postgres", { "url" => kaal_backend_url.sub(%r{//[^@/]*@}, "//#{role}@") },
                           down: ["database cut", cut],
                           up: ["database back", -> { admin.exec("ALTER ROLE #{role} LOGIN") }])
  ensure
    if admin
      admin.exec("ALTER ROLE #{role} LOGIN")
      terminate_all&.call
      wait_until("the role's sessions to end") do
        admin.exec_params("SELECT count(*) FROM pg_stat_activity WHERE usename = $1", [role]).getvalue(0, 0).to_i.zero?
      end
      admin.exec("REASSIGN OWNED BY #{role} TO CURRENT_USER")
      admin.exec("DROP OWNED BY #{role}")
      admin.exec("DROP ROLE IF EXISTS #{role}")
    end
  end
end

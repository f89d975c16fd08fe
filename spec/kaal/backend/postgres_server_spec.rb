# frozen_string_literal: true

require "pg"
require "socket"
require "uri"

# What the PostgreSQL backend does against a real server beyond the shared
# examples: "a SQL server backend" (spec/support/server_backend_examples.rb)
# plus the schema it creates, concurrent migrations and a connection error
# that never shows the password.
RSpec.describe "PostgreSQL backend against a server" do
  kaal_backend_for :postgres
  include_context "a SQL server backend's namespace", "pg"

  let(:raw) { PG.connect(kaal_backend_url) }

  # Runs text on the raw connection ("?" placeholders become $1, $2, ...);
  # returns the rows.
  def sql(text, *params)
    n = 0
    raw.exec_params(text.gsub("?") { "$#{n += 1}" }, params).to_a
  end

  # Server pids of kaal's sessions (application_name "kaal").
  def session_ids
    raw.exec("SELECT pg_stat_clear_snapshot()") # fresh figures also inside a transaction
    raw.exec("SELECT pid FROM pg_stat_activity WHERE application_name = 'kaal'").map { |r| r["pid"].to_i }
  end

  def kill_session(pid)
    raw.exec_params("SELECT pg_terminate_backend($1)", [pid])
  end

  def socket_connection(url)
    socket_dir = raw.exec("SHOW unix_socket_directories").getvalue(0, 0).split(",").first.strip
    { host: socket_dir, port: url.port, database: url.path.delete_prefix("/"), username: url.user }
  end

  it_behaves_like "a SQL server backend", adapter: "postgresql", batch: 2000,
                                          lock_timeout: [/statement timeout/, 0.8..3.5]

  describe "schema" do
    it "creates the agreed tables and columns, and migrating again changes nothing" do
      backend.migrate
      backend.migrate
      cols = raw.exec(<<~SQL).map { |r| [r["table_name"], r["column_name"]] }
        SELECT table_name, column_name FROM information_schema.columns
        WHERE table_name LIKE 'kaal\\_%' AND table_schema = current_schema()
      SQL
      expect(cols).to include(%w[kaal_dispatches claim_token], %w[kaal_dispatches updated_at],
                              %w[kaal_delayed_jobs run_at_ms], %w[kaal_delayed_jobs created_at],
                              %w[kaal_job_states enabled], %w[kaal_nodes last_seen])
      indexes = raw.exec("SELECT indexname FROM pg_indexes WHERE tablename LIKE 'kaal\\_%'").map { |r| r["indexname"] }
      expect(indexes).to include("index_kaal_dispatches_on_namespace_and_fire_time",
                                 "index_kaal_delayed_jobs_on_namespace_and_run_at_ms")
    end

    it "lets several processes migrate at the same time" do
      pids = Array.new(3) do
        fork do
          handle = KaalBackendSpec.build(:postgres, unique_namespace("pg-mig"))
          handle.migrate
          handle.close
          exit!(0)
        rescue StandardError => e
          warn e.full_message
          exit!(1)
        end
      end
      statuses = pids.map { |pid| Process.wait2(pid).last }
      expect(statuses).to all(be_success)
    end
  end

  describe "a connection error" do
    it "never shows the password" do
      port = TCPServer.open("127.0.0.1", 0) { |s| s.addr[1] } # nothing listens there now
      handle = Kaal::Backend.build(:postgres, namespace: ns,
                                              config: { url: "postgres://kaal:s3cr3t-pw@127.0.0.1:#{port}/db",
                                                        connect_timeout: 2 })
      expect { handle.ping }.to raise_error(Kaal::ConnectionError) { |e|
        expect(e.message).to include("127.0.0.1:#{port}")
        expect(e.message).not_to include("s3cr3t")
      }
      expect(handle.inspect).not_to include("s3cr3t")
    end
  end
end

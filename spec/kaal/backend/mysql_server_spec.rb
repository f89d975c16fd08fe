# frozen_string_literal: true

require "mysql2"
require "uri"

# What the MySQL/MariaDB backend does against a real server beyond the shared
# examples: "a SQL server backend" (spec/support/server_backend_examples.rb)
# plus the schema it creates (InnoDB, utf8mb4) and a connection error that
# never shows the password. Keys that INSERT IGNORE would truncate silently
# are refused there too.
RSpec.describe "MySQL backend against a server" do
  kaal_backend_for :mysql
  include_context "a SQL server backend's namespace", "my"

  let(:raw) do
    u = URI.parse(kaal_backend_url)
    Mysql2::Client.new(host: u.host, port: u.port, username: u.user || "root",
                       password: u.password, database: u.path.delete_prefix("/"), encoding: "utf8mb4")
  end

  after { raw.query("ROLLBACK") } # runs before the context's cleanup

  # Runs text on the raw client ("?" placeholders); returns the rows.
  def sql(text, *params)
    return raw.query(text).to_a if params.empty?

    stmt = raw.prepare(text)
    stmt.execute(*params)&.to_a
  ensure
    stmt&.close
  end

  # Connection ids on the server other than the raw client's own.
  def session_ids
    raw.query("SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()").map { |r| r["ID"] }
  end

  def kill_session(id)
    raw.query("KILL #{Integer(id)}")
  end

  def socket_connection(url)
    { socket: raw.query("SELECT @@socket AS s").first["s"], database: url.path.delete_prefix("/"), username: url.user }
  end

  # batch: several INSERTs, one claim token
  it_behaves_like "a SQL server backend", adapter: "mysql2", batch: 1000,
                                          lock_timeout: [/Lock wait timeout/, 0.8..4.0]

  describe "schema" do
    it "creates the agreed InnoDB utf8mb4 tables with their indexes, and migrating again changes nothing" do
      backend.migrate
      backend.migrate
      tables = raw.query("SELECT TABLE_NAME, ENGINE, TABLE_COLLATION FROM information_schema.TABLES" \
                         " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'kaal\\_%'").to_a
      expect(tables.map { |t| t["TABLE_NAME"] })
        .to include("kaal_dispatches", "kaal_delayed_jobs", "kaal_job_states", "kaal_nodes")
      expect(tables.map { |t| t["ENGINE"] }).to all(eq("InnoDB"))
      expect(tables.map { |t| t["TABLE_COLLATION"] }).to all(start_with("utf8mb4"))
      indexes = raw.query("SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS" \
                          " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'kaal\\_%'").map { |r| r["INDEX_NAME"] }
      expect(indexes).to include("index_kaal_dispatches_on_namespace_and_fire_time",
                                 "index_kaal_delayed_jobs_on_namespace_and_run_at_ms")
    end
  end

  describe "a connection error" do
    it "never shows the password" do
      handle = Kaal::Backend.build(:mysql, namespace: ns,
                                           config: { url: kaal_backend_url.sub("root@", "root:s3cr3t-pw@"),
                                                     connect_timeout: 2 })
      expect { handle.ping }.to raise_error(Kaal::ConnectionError) { |e|
        expect(e.message).to match(/denied/i)
        expect(e.message).not_to include("s3cr3t")
      }
      expect(handle.inspect).not_to include("s3cr3t")
    end
  end
end

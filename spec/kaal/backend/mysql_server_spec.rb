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

  describe "a namespace" do
    it "over 255 characters is refused where the handle is built, naming the limit" do
      # INSERT IGNORE used to cut it short, so the read-back by the full
      # namespace found nothing and every claim was lost.
      long = "n" * 256
      expect { Kaal::Backend.build(:mysql, namespace: long, config: { url: kaal_backend_url }) }
        .to raise_error(Kaal::ConfigurationError, /namespace: is 256 characters long; at most 255 fit/)
      params = Kaal::Backend::ConnectionParams.from(:mysql, url: kaal_backend_url)
      expect { Kaal::Native::Backend.new("mysql", long, params) }
        .to raise_error(ArgumentError, /mysql: namespace is 256 characters long; at most 255 fit/)
    end

    it "of 255 characters (multibyte) claims and finds its pairs" do
      long = "é" * 255
      handle = Kaal::Backend.build(:mysql, namespace: long, config: { url: kaal_backend_url })
      expect(claim(handle, [["job", fire], ["job", fire + 1]])).to eq([true, true])
      expect(claim(handle, [["job", fire]])).to eq([false])
      expect(sql("SELECT namespace FROM kaal_dispatches WHERE namespace = ?", long).size).to eq(2)
    ensure
      handle&.close
      sql("DELETE FROM kaal_dispatches WHERE namespace = ?", long)
    end
  end

  describe "a claim whose later INSERT fails" do
    # 300 pairs of one key: sorted by fire time, the first INSERT takes 256
    # of them and commits; the second waits on the row held by the raw
    # connection. The claim fails; the 256 rows nobody was told about must
    # not stay "claimed" by no one, or the retry of those runs finds them
    # taken and they never run.
    let(:pairs) { Array.new(300) { |i| ["job", fire + i] } }

    def hold_last_pair
      sql("BEGIN")
      sql("INSERT INTO kaal_dispatches (namespace, job_key, fire_time, status, claimed_at, updated_at)" \
          " VALUES (?, 'job', ?, 'claimed', 0, 0)", ns, fire + 299)
    end

    def logged = sql("SELECT COUNT(*) AS n FROM kaal_dispatches WHERE namespace = ?", ns).first["n"]

    it "releases what its earlier INSERTs took before the next claim, so the retry of those runs wins them" do
      slow = KaalBackendSpec.build(kaal_backend_kind, ns, config: { command_timeout: 1 })
      slow.ping
      hold_last_pair
      expect { claim(slow, pairs) }.to raise_error(Kaal::BackendError, /Lock wait timeout/)
      sql("ROLLBACK")
      expect(logged).to eq(256)
      # the scheduler's retry: other chunks first (claim_columns per 1,000 runs), then these
      expect(claim(slow, [["elsewhere", fire]])).to eq([true])
      expect(logged).to eq(1) # released before that claim
      expect(claim(slow, pairs)).to all(be(true))
      expect(claim(backend_factory.call(ns), pairs)).to all(be(false))
    ensure
      slow&.close
    end

    it "releases them after a lost connection too, including the INSERT the server never answered" do
      slow = KaalBackendSpec.build(kaal_backend_kind, ns, config: { command_timeout: 5 })
      id = session_id(slow)
      hold_last_pair
      batch = pairs
      waiting = Thread.new { claim(slow, batch) }
      waiting.report_on_exception = false
      deadline = Kaal::Clock.monotonic + 5
      # its second INSERT, stuck on the held row (MariaDB's TIME_MS)
      until raw.query("SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID = #{Integer(id)}" \
                      " AND INFO LIKE 'INSERT IGNORE%' AND TIME_MS > 300").first["n"] == 1
        raise "the claim never waited on the held row" if Kaal::Clock.monotonic > deadline

        sleep 0.02
      end
      kill_session(id)
      expect { waiting.value }.to raise_error(Kaal::ConnectionError)
      sql("ROLLBACK")
      expect(logged).to eq(256) # the DELETE could not run on the lost session
      expect(claim(slow, [["elsewhere", fire]])).to eq([true])
      expect(logged).to eq(1)
      expect(claim(slow, pairs)).to all(be(true))
    ensure
      slow&.close
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

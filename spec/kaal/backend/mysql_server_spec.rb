# frozen_string_literal: true

require "mysql2"
require "securerandom"
require "uri"

# What the MySQL/MariaDB backend does against a real server beyond the shared
# examples: it waits without the GVL, fails closed and reconnects when its
# connection is killed, survives fork, hands each delayed job to exactly one
# of several processes, and stores any job key exactly (INSERT IGNORE would
# otherwise truncate silently).
RSpec.describe "MySQL backend against a server" do
  kaal_backend_for :mysql

  let(:ns) { unique_namespace("my") }
  let(:backend) { backend_factory.call(ns) }
  let(:raw) do
    u = URI.parse(kaal_backend_url)
    Mysql2::Client.new(host: u.host, port: u.port, username: u.user || "root",
                       password: u.password, database: u.path.delete_prefix("/"), encoding: "utf8mb4")
  end
  let(:fire) { 1_800_000_000 + rand(1_000_000) }

  after do
    raw.query("ROLLBACK")
    esc = raw.escape(ns)
    raw.query("DELETE FROM kaal_dispatches WHERE namespace = '#{esc}'")
    raw.query("DELETE FROM kaal_delayed_jobs WHERE namespace = '#{esc}'")
    raw.close
  end

  def claim(handle, pairs, node: "spec")
    handle.claim(pairs, lease_ms: 60_000, node: node, now: Time.now)
  end

  # Connection ids on the server other than the raw client's own.
  def connection_ids
    raw.query("SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()").map { |r| r["ID"] }
  end

  # (Re)connects handle and returns the server id of its new connection.
  def connection_id(handle)
    handle.close
    before = connection_ids
    handle.connect
    handle.ping
    added = connection_ids - before
    expect(added.size).to eq(1), "expected exactly one new connection, got #{added.inspect}"
    added.first
  end

  # Starts a transaction on the raw connection that holds the row (ns, key,
  # fire) uncommitted, so a kaal claim of that pair must wait for it.
  def hold_row(key)
    raw.query("BEGIN")
    stmt = raw.prepare("INSERT INTO kaal_dispatches (namespace, job_key, fire_time, status, claimed_at, updated_at)" \
                       " VALUES (?, ?, ?, 'claimed', 0, 0)")
    stmt.execute(ns, key, fire)
    stmt.close
  end

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

  describe "connecting" do
    it "works from an Active Record style hash, over TCP and over the Unix socket" do
      u = URI.parse(kaal_backend_url)
      socket = raw.query("SELECT @@socket AS s").first["s"]
      configs = [
        { adapter: "mysql2", host: u.host, port: u.port, database: u.path.delete_prefix("/"), username: u.user },
        { adapter: "mysql2", socket: socket, database: u.path.delete_prefix("/"), username: u.user }
      ]
      configs.each_with_index do |conn, i|
        handle = Kaal::Backend.build(:mysql, namespace: ns, config: { connection: conn })
        expect(claim(handle, [["via-#{i}", fire]])).to eq([true])
        handle.close
      end
      expect(claim(backend, [["via-0", fire], ["via-1", fire]])).to eq([false, false])
    end
  end

  describe "claims" do
    it "maps every won row back to its pair, whatever characters the key holds" do
      keys = ["plain", "quo\"te", "back\\slash", "it's", "comma,{brace}", "ünïcödé ✓", "emoji 🚀", "Case", "case"]
      pairs = keys.map { |k| [k, fire] }
      expect(claim(backend, pairs)).to all(be(true))
      expect(claim(backend, pairs)).to all(be(false))
      stored = raw.query("SELECT job_key FROM kaal_dispatches WHERE namespace = '#{raw.escape(ns)}'")
                  .map { |r| r["job_key"] }
      expect(stored).to match_array(keys)
    end

    it "claims a batch of 1000 pairs (several INSERTs, one token) and gives mixed batches the right answers" do
      pairs = Array.new(1000) { |i| ["job-#{i % 40}", fire + i / 40] }
      expect(claim(backend, pairs)).to all(be(true))
      mixed = [["job-0", fire], ["fresh", fire], ["job-1", fire + 1], ["fresh", fire + 1]]
      expect(claim(backend, mixed)).to eq([false, true, false, true])
    end

    it "gives a pair repeated inside one batch to its first occurrence only" do
      expect(claim(backend, [["a", fire], ["b", fire], ["a", fire]])).to eq([true, true, false])
    end

    it "refuses keys that INSERT IGNORE would truncate, claiming nothing" do
      expect { claim(backend, [["ok", fire], ["x" * 256, fire]]) }.to raise_error(ArgumentError, /255/)
      expect { claim(backend, [["bad \xFF".b, fire]]) }.to raise_error(ArgumentError)
      # "x" * 255 + "y" would have been stored as "x" * 255: it must not steal that pair
      expect(claim(backend, [["ok", fire], ["x" * 255, fire], ["é" * 255, fire]])).to eq([true, true, true])
    end

    it "lets exactly one of several nodes win each pair" do
      handles = Array.new(4) { backend_factory.call(ns) }
      pairs = Array.new(50) { |i| ["job-#{i}", fire] }
      results = handles.map { |h| Thread.new { claim(h, pairs, node: "node-#{h.object_id}") } }.map(&:value)
      wins = results.transpose.map { |per_pair| per_pair.count(true) }
      expect(wins).to all(eq(1))
    end
  end

  describe "waiting on the server" do
    it "lets other Ruby threads run while a claim waits for a row lock" do
      backend.ping
      hold_row("held")
      releaser = Thread.new do
        sleep 1.0
        raw.query("ROLLBACK")
      end
      t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      won = expect_progress_while(min_ticks: 20) { claim(backend, [["held", fire]]) }
      waited = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
      releaser.join
      expect(won).to eq([true]) # the other transaction rolled back: the pair is ours
      expect(waited).to be >= 0.8
    end

    it "gives up after command_timeout instead of waiting forever, and the handle keeps working" do
      slow = KaalBackendSpec.build(:mysql, ns, config: { command_timeout: 1 })
      slow.ping
      hold_row("held")
      t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      expect { claim(slow, [["held", fire]]) }.to raise_error(Kaal::BackendError, /Lock wait timeout/)
      expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0).to be_between(0.8, 4.0)
      raw.query("ROLLBACK")
      expect(claim(slow, [["held", fire]])).to eq([true])
    ensure
      slow&.close
    end
  end

  describe "a lost connection" do
    it "raises ConnectionError (claiming nothing), then reconnects on the next call" do
      id = connection_id(backend)
      expect(claim(backend, [["job", fire]])).to eq([true])
      raw.query("KILL #{Integer(id)}")
      100.times { connection_ids.include?(id) ? sleep(0.05) : break }

      expect { claim(backend, [["job", fire + 1]]) }.to raise_error(Kaal::ConnectionError, /mysql/)
      expect(backend.connected?).to be(false)
      expect(claim(backend, [["job", fire + 1]])).to eq([true]) # the failed call claimed nothing
      expect(claim(backend, [["job", fire]])).to eq([false])
    end

    it "never shows the password in a connection error" do
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

  describe "fork" do
    it "reconnects in the child and leaves the parent's connection working" do
      parent_id = connection_id(backend)
      expect(claim(backend, [["job", fire]])).to eq([true])
      reader, writer = IO.pipe
      child = fork do
        reader.close
        result =
          begin
            ok = claim(backend, [["job", fire + 1]]) == [true] && claim(backend, [["job", fire]]) == [false]
            ok ? "ok" : "wrong result"
          rescue StandardError => e
            "#{e.class}: #{e.message}"
          end
        writer.write(result)
        writer.close
        exit!(0)
      end
      writer.close
      Process.wait(child)
      expect(reader.read).to eq("ok")
      expect(connection_ids).to include(parent_id) # no COM_QUIT on the parent's socket
      expect(claim(backend, [["job", fire + 1]])).to eq([false])
      expect(claim(backend, [["job", fire + 2]])).to eq([true])
      expect(connection_ids).to include(parent_id) # same connection, no reconnect
    end
  end

  describe "delayed jobs" do
    it "hands each due job to exactly one of several processes (FOR UPDATE SKIP LOCKED)" do
      ids = Array.new(300) { |i| "job-#{i}" }
      ids.each_with_index do |id, i|
        backend.delayed_add(job_id: id, run_at_ms: 1_000 + (i % 17), job_class: "Work", args_json: "[#{i}]")
      end
      backend.delayed_add(job_id: "later", run_at_ms: 10_000_000, job_class: "Work", args_json: "[]")

      pipes = Array.new(4) do
        reader, writer = IO.pipe
        pid = fork do
          reader.close
          handle = KaalBackendSpec.build(:mysql, ns)
          got = []
          loop do
            batch = handle.delayed_claim(now_ms: 5_000, limit: 7)
            break if batch.empty?

            raise "not oldest first" unless batch.map { |j| j[:run_at_ms] } == batch.map { |j| j[:run_at_ms] }.sort

            got.concat(batch.map { |j| j[:job_id] })
          end
          writer.write(got.join("\n"))
          writer.close
          exit!(0)
        rescue StandardError => e
          writer.write("ERROR #{e.class}: #{e.message}")
          exit!(1)
        end
        writer.close
        [pid, reader]
      end
      claimed = pipes.flat_map do |pid, reader|
        out = reader.read
        Process.wait(pid)
        expect(out).not_to start_with("ERROR")
        out.split("\n")
      end
      expect(claimed.size).to eq(ids.size)
      expect(claimed).to match_array(ids)
      expect(backend.delayed_count).to eq(1)
      expect(backend.delayed_list.map { |j| j[:job_id] }).to eq(["later"])
    end

    it "skips a due job another transaction has locked instead of waiting for it" do
      %w[a b c].each_with_index do |id, i|
        backend.delayed_add(job_id: id, run_at_ms: 100 + i, job_class: "Work", args_json: "[]")
      end
      raw.query("BEGIN")
      raw.query("SELECT 1 FROM kaal_delayed_jobs WHERE namespace = '#{raw.escape(ns)}' AND job_id = 'a' FOR UPDATE").to_a
      t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      got = backend.delayed_claim(now_ms: 1_000, limit: 10).map { |j| j[:job_id] }
      expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0).to be < 0.5
      expect(got).to eq(%w[b c])
      raw.query("ROLLBACK")
      expect(backend.delayed_claim(now_ms: 1_000, limit: 10).map { |j| j[:job_id] }).to eq(%w[a])
    end

    it "returns large args intact and accepts a job inserted through the application's own connection" do
      big = "[\"#{"x" * 70_000}\"]"
      backend.delayed_add(job_id: "big", run_at_ms: 1, job_class: "Work", args_json: big)
      stmt = raw.prepare("INSERT INTO kaal_delayed_jobs (namespace, job_id, run_at_ms, job_class, queue, args, created_at)" \
                         " VALUES (?, 'from-app', 5, 'Mailer', 'mail', '[\"a\"]', 0)")
      stmt.execute(ns)
      stmt.close
      expect { backend.delayed_add(job_id: "from-app", run_at_ms: 5, job_class: "X", args_json: "[]") }
        .to raise_error(Kaal::DuplicateJobError)
      expect(backend.delayed_claim(now_ms: 10, limit: 5))
        .to eq([{ job_id: "big", run_at_ms: 1, job_class: "Work", queue: nil, args_json: big },
                { job_id: "from-app", run_at_ms: 5, job_class: "Mailer", queue: "mail", args_json: "[\"a\"]" }])
    end
  end
end

# frozen_string_literal: true

require "pg"
require "securerandom"
require "uri"

# What the PostgreSQL backend does against a real server beyond the shared
# examples: it waits without the GVL, fails closed and reconnects when its
# session is killed, survives fork, hands each delayed job to exactly one of
# several processes, and stores any job key exactly.
RSpec.describe "PostgreSQL backend against a server" do
  kaal_backend_for :postgres

  let(:ns) { unique_namespace("pg") }
  let(:backend) { backend_factory.call(ns) }
  let(:raw) { PG.connect(kaal_backend_url) }
  let(:fire) { 1_800_000_000 + rand(1_000_000) }

  after do
    raw.exec_params("DELETE FROM kaal_dispatches WHERE namespace = $1", [ns])
    raw.exec_params("DELETE FROM kaal_delayed_jobs WHERE namespace = $1", [ns])
    raw.close
  end

  def claim(handle, pairs, node: "spec")
    handle.claim(pairs, lease_ms: 60_000, node: node, now: Time.now)
  end

  # Server pids of kaal's sessions (application_name "kaal").
  def kaal_pids
    raw.exec("SELECT pid FROM pg_stat_activity WHERE application_name = 'kaal'").map { |r| r["pid"].to_i }
  end

  # (Re)connects handle and returns the server pid of its new session.
  def session_pid(handle)
    handle.close
    before = kaal_pids
    handle.connect
    handle.ping
    added = kaal_pids - before
    expect(added.size).to eq(1), "expected exactly one new kaal session, got #{added.inspect}"
    added.first
  end

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

  describe "connecting" do
    it "works from an Active Record style hash, over TCP and over the Unix socket" do
      u = URI.parse(kaal_backend_url)
      socket_dir = raw.exec("SHOW unix_socket_directories").getvalue(0, 0).split(",").first.strip
      configs = [
        { adapter: "postgresql", host: u.host, port: u.port, database: u.path.delete_prefix("/"), username: u.user },
        { adapter: "postgresql", host: socket_dir, port: u.port, database: u.path.delete_prefix("/"), username: u.user }
      ]
      configs.each_with_index do |conn, i|
        handle = Kaal::Backend.build(:postgres, namespace: ns, config: { connection: conn })
        expect(claim(handle, [["via-#{i}", fire]])).to eq([true])
        handle.close
      end
      expect(claim(backend, [["via-0", fire], ["via-1", fire]])).to eq([false, false])
    end
  end

  describe "claims" do
    it "maps every won row back to its pair, whatever characters the key holds" do
      keys = ["plain", "quo\"te", "back\\slash", "comma,{brace}", "spa ce", "ünïcödé ✓", "emoji 🚀", "NULL", "{}"]
      pairs = keys.map { |k| [k, fire] }
      expect(claim(backend, pairs)).to all(be(true))
      expect(claim(backend, pairs)).to all(be(false))
      stored = raw.exec_params("SELECT job_key FROM kaal_dispatches WHERE namespace = $1", [ns]).map { |r| r["job_key"] }
      expect(stored).to match_array(keys)
    end

    it "claims a batch of 2000 pairs in one call and gives mixed batches the right answers" do
      pairs = Array.new(2000) { |i| ["job-#{i % 40}", fire + i / 40] }
      expect(claim(backend, pairs)).to all(be(true))
      mixed = [["job-0", fire], ["fresh", fire], ["job-1", fire + 1], ["fresh", fire + 1]]
      expect(claim(backend, mixed)).to eq([false, true, false, true])
    end

    it "gives a pair repeated inside one batch to its first occurrence only" do
      expect(claim(backend, [["a", fire], ["b", fire], ["a", fire]])).to eq([true, true, false])
    end

    it "refuses keys that the VARCHAR(255) column cannot hold exactly, claiming nothing" do
      expect { claim(backend, [["ok", fire], ["x" * 256, fire]]) }.to raise_error(ArgumentError, /255/)
      expect { claim(backend, [["bad \xFF".b, fire]]) }.to raise_error(ArgumentError)
      expect(claim(backend, [["ok", fire], ["é" * 255, fire]])).to eq([true, true])
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
      raw.exec("BEGIN")
      raw.exec_params("INSERT INTO kaal_dispatches (namespace, job_key, fire_time, status, claimed_at, updated_at)" \
                      " VALUES ($1, 'held', $2, 'claimed', 0, 0)", [ns, fire])
      releaser = Thread.new do
        sleep 1.0
        raw.exec("ROLLBACK")
      end
      t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      won = expect_progress_while(min_ticks: 20) { claim(backend, [["held", fire]]) }
      waited = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
      releaser.join
      expect(won).to eq([true]) # the other transaction rolled back: the pair is ours
      expect(waited).to be >= 0.8
    end

    it "gives up after command_timeout instead of waiting forever, and the handle keeps working" do
      slow = KaalBackendSpec.build(:postgres, ns, config: { command_timeout: 1 })
      slow.ping
      raw.exec("BEGIN")
      raw.exec_params("INSERT INTO kaal_dispatches (namespace, job_key, fire_time, status, claimed_at, updated_at)" \
                      " VALUES ($1, 'held', $2, 'claimed', 0, 0)", [ns, fire])
      t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      expect { claim(slow, [["held", fire]]) }.to raise_error(Kaal::BackendError, /statement timeout/)
      expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0).to be_between(0.8, 3.5)
      raw.exec("ROLLBACK")
      expect(claim(slow, [["held", fire]])).to eq([true])
    ensure
      slow&.close
    end
  end

  describe "a lost session" do
    it "raises ConnectionError (claiming nothing), then reconnects on the next call" do
      pid = session_pid(backend)
      expect(claim(backend, [["job", fire]])).to eq([true])
      raw.exec_params("SELECT pg_terminate_backend($1)", [pid])
      100.times { kaal_pids.include?(pid) ? sleep(0.05) : break }

      expect { claim(backend, [["job", fire + 1]]) }.to raise_error(Kaal::ConnectionError, /postgres/)
      expect(backend.connected?).to be(false)
      # the failed call claimed nothing: the pair is still free
      expect(claim(backend, [["job", fire + 1]])).to eq([true])
      expect(claim(backend, [["job", fire]])).to eq([false])
    end

    it "never shows the password in a connection error" do
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

  describe "fork" do
    it "reconnects in the child and leaves the parent's session working" do
      parent_pid = session_pid(backend)
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
      expect(kaal_pids).to include(parent_pid) # the child did not end the parent's session
      expect(claim(backend, [["job", fire + 1]])).to eq([false]) # and it sees the child's claim
      expect(claim(backend, [["job", fire + 2]])).to eq([true])
      expect(kaal_pids).to include(parent_pid) # same session, no reconnect
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
          handle = KaalBackendSpec.build(:postgres, ns)
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
      raw.exec("BEGIN")
      raw.exec_params("SELECT 1 FROM kaal_delayed_jobs WHERE namespace = $1 AND job_id = 'a' FOR UPDATE", [ns])
      t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      got = backend.delayed_claim(now_ms: 1_000, limit: 10).map { |j| j[:job_id] }
      expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0).to be < 0.5
      expect(got).to eq(%w[b c])
      raw.exec("ROLLBACK")
      expect(backend.delayed_claim(now_ms: 1_000, limit: 10).map { |j| j[:job_id] }).to eq(%w[a])
    end

    it "accepts a job inserted through the application's own connection (docs/sql.md columns)" do
      raw.exec_params("INSERT INTO kaal_delayed_jobs (namespace, job_id, run_at_ms, job_class, queue, args, created_at)" \
                      " VALUES ($1, 'from-app', 5, 'Mailer', 'mail', '[\"a\"]', 0)", [ns])
      expect { backend.delayed_add(job_id: "from-app", run_at_ms: 5, job_class: "X", args_json: "[]") }
        .to raise_error(Kaal::DuplicateJobError)
      expect(backend.delayed_claim(now_ms: 10, limit: 5))
        .to eq([{ job_id: "from-app", run_at_ms: 5, job_class: "Mailer", queue: "mail", args_json: "[\"a\"]" }])
    end
  end
end

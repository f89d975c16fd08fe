# frozen_string_literal: true

require "timeout"

require "uri"

# "a SQL server backend": what the PostgreSQL and MySQL/MariaDB backends do
# against a real server beyond "a kaal backend" (spec/support/backend_examples.rb):
# they accept an Active Record style connection hash, store any key exactly,
# wait without the GVL and give up after command_timeout, fail closed and
# reconnect when their session is killed, survive fork, and hand each delayed
# job to exactly one of several processes (FOR UPDATE SKIP LOCKED).
#
# Usage, in spec/kaal/backend/<kind>_server_spec.rb:
#
#   RSpec.describe "PostgreSQL backend against a server" do
#     kaal_backend_for :postgres
#     include_context "a SQL server backend's namespace", "pg"
#     let(:raw) { PG.connect(kaal_backend_url) }   # the application's own client
#     def sql(text, *params) ... end               # "?" placeholders; returns rows (Hashes)
#     def session_ids ... end                      # server ids of kaal's sessions
#     def kill_session(id) ... end                 # ends that session from the server side
#     def socket_connection(url) ... end           # AR hash that connects over the Unix socket
#     it_behaves_like "a SQL server backend", adapter: "postgresql", batch: 2000,
#                                             lock_timeout: [/statement timeout/, 0.8..3.5]
#   end
#
# The context gives ns, backend (a handle on ns), fire (a fresh fire time),
# claim(handle, pairs) and session_id(handle), migrates before and deletes the
# namespace's rows after each example; the file's own examples can use them too.
RSpec.shared_context "a SQL server backend's namespace" do |prefix|
  let(:ns) { unique_namespace(prefix) }
  let(:backend) { backend_factory.call(ns) }
  let(:fire) { 1_800_000_000 + rand(1_000_000) }

  # Every example starts on a migrated schema, even one that never touches
  # `backend`: the cleanup below must not depend on which example a random
  # order runs first against a fresh database.
  before { backend }

  after do
    sql("DELETE FROM kaal_dispatches WHERE namespace = ?", ns)
    sql("DELETE FROM kaal_delayed_jobs WHERE namespace = ?", ns)
    raw.close
  end

  def claim(handle, pairs, node: "spec")
    handle.claim(pairs, lease_ms: 60_000, node: node, now: Time.now)
  end

  # (Re)connects handle and returns the server id of its new session.
  def session_id(handle)
    handle.close
    before = session_ids
    handle.connect
    handle.ping
    added = session_ids - before
    expect(added.size).to eq(1), "expected exactly one new kaal session, got #{added.inspect}"
    added.first
  end
end

# adapter: the Active Record adapter name; batch: pairs in the large claim;
# lock_timeout: [error message pattern, seconds range] when command_timeout 1
# fires while a row lock is held.
RSpec.shared_examples "a SQL server backend" do |adapter:, batch:, lock_timeout:|
  # Starts a transaction on the raw connection that holds the row (ns, key,
  # fire) uncommitted, so a kaal claim of that pair must wait for it.
  def hold_row(key)
    sql("BEGIN")
    sql("INSERT INTO kaal_dispatches (namespace, job_key, fire_time, status, claimed_at, updated_at)" \
        " VALUES (?, ?, ?, 'claimed', 0, 0)", ns, key, fire)
  end

  # Ends hold_row's transaction: the held pair is then free, and handle wins it.
  def expect_won_after_rollback(handle)
    sql("ROLLBACK")
    expect(claim(handle, [["held", fire]])).to eq([true])
  end

  def elapsed_since(t0)
    Kaal::Clock.monotonic - t0
  end

  describe "connecting" do
    it "works from an Active Record style hash, over TCP and over the Unix socket" do
      u = URI.parse(kaal_backend_url)
      configs = [
        { adapter: adapter, host: u.host, port: u.port, database: u.path.delete_prefix("/"), username: u.user },
        { adapter: adapter, **socket_connection(u) }
      ]
      configs.each_with_index do |conn, i|
        handle = Kaal::Backend.build(kaal_backend_kind, namespace: ns, config: { connection: conn })
        expect(claim(handle, [["via-#{i}", fire]])).to eq([true])
        handle.close
      end
      expect(claim(backend, [["via-0", fire], ["via-1", fire]])).to eq([false, false])
    end
  end

  describe "claims" do
    it "maps every won row back to its pair, whatever characters the key holds" do
      keys = ["plain", "quo\"te", "back\\slash", "it's", "comma,{brace}", "spa ce", "ünïcödé ✓", "emoji 🚀",
              "Case", "case", "NULL", "{}"]
      pairs = keys.map { |k| [k, fire] }
      expect(claim(backend, pairs)).to all(be(true))
      expect(claim(backend, pairs)).to all(be(false))
      stored = sql("SELECT job_key FROM kaal_dispatches WHERE namespace = ?", ns).map { |r| r["job_key"] }
      expect(stored).to match_array(keys)
    end

    it "claims a batch of #{batch} pairs in one call and gives mixed batches the right answers" do
      pairs = Array.new(batch) { |i| ["job-#{i % 40}", fire + i / 40] }
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
      # "x" * 255 + "y" truncated would be "x" * 255: it must not have stolen that pair
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
        sql("ROLLBACK")
      end
      t0 = Kaal::Clock.monotonic
      won = expect_progress_while(min_ticks: 20) { claim(backend, [["held", fire]]) }
      waited = elapsed_since(t0)
      releaser.join
      expect(won).to eq([true]) # the other transaction rolled back: the pair is ours
      expect(waited).to be >= 0.8
    end

    it "gives up after command_timeout instead of waiting forever, and the handle keeps working" do
      message, seconds = lock_timeout
      slow = KaalBackendSpec.build(kaal_backend_kind, ns, config: { command_timeout: 1 })
      slow.ping
      hold_row("held")
      t0 = Kaal::Clock.monotonic
      expect { claim(slow, [["held", fire]]) }.to raise_error(Kaal::BackendError, message)
      expect(elapsed_since(t0)).to be_between(seconds.begin, seconds.end)
      expect_won_after_rollback(slow)
    ensure
      slow&.close
    end
  end

  describe "an interrupt while the server makes the call wait" do
    it "ends the call within 0.5 s without spinning, and the handle works again" do
      slow = KaalBackendSpec.build(kaal_backend_kind, ns, config: { command_timeout: 2 })
      id = session_id(slow)
      hold_row("held")
      t0 = Kaal::Clock.monotonic
      c0 = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
      expect { Timeout.timeout(0.3) { claim(slow, [["held", fire]]) } }.to raise_error(Timeout::Error)
      wall = elapsed_since(t0)
      expect(wall).to be < 0.8
      expect(Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID) - c0).to be < wall * 0.3
      # The statement the interrupt left behind must not win the pair once
      # the lock is free: the server ends it with the dropped session
      # (PostgreSQL notices at once, MySQL at its lock wait timeout).
      deadline = Kaal::Clock.monotonic + 5
      sleep 0.05 while session_ids.include?(id) && Kaal::Clock.monotonic < deadline
      expect(session_ids).not_to include(id)
      expect_won_after_rollback(slow)
    ensure
      slow&.close
    end
  end

  describe "a lost session" do
    it "raises ConnectionError (claiming nothing), then reconnects on the next call" do
      id = session_id(backend)
      expect(claim(backend, [["job", fire]])).to eq([true])
      kill_session(id)
      100.times { session_ids.include?(id) ? sleep(0.05) : break }

      expect { claim(backend, [["job", fire + 1]]) }.to raise_error(Kaal::ConnectionError, /#{kaal_backend_kind}/)
      expect(backend.connected?).to be(false)
      expect(claim(backend, [["job", fire + 1]])).to eq([true]) # the failed call claimed nothing
      expect(claim(backend, [["job", fire]])).to eq([false])
    end
  end

  describe "fork" do
    it "reconnects in the child and leaves the parent's session working" do
      parent_id = session_id(backend)
      expect(claim(backend, [["job", fire]])).to eq([true])
      in_child = in_fork do
        ok = claim(backend, [["job", fire + 1]]) == [true] && claim(backend, [["job", fire]]) == [false]
        ok ? "ok" : "wrong result"
      end
      expect(in_child).to eq("ok")
      expect(session_ids).to include(parent_id) # the child did not end the parent's session
      expect(claim(backend, [["job", fire + 1]])).to eq([false]) # and it sees the child's claim
      expect(claim(backend, [["job", fire + 2]])).to eq([true])
      expect(session_ids).to include(parent_id) # same session, no reconnect
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
          handle = KaalBackendSpec.build(kaal_backend_kind, ns)
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
      sql("BEGIN")
      sql("SELECT 1 FROM kaal_delayed_jobs WHERE namespace = ? AND job_id = 'a' FOR UPDATE", ns)
      t0 = Kaal::Clock.monotonic
      got = backend.delayed_claim(now_ms: 1_000, limit: 10).map { |j| j[:job_id] }
      expect(elapsed_since(t0)).to be < 0.5
      expect(got).to eq(%w[b c])
      sql("ROLLBACK")
      expect(backend.delayed_claim(now_ms: 1_000, limit: 10).map { |j| j[:job_id] }).to eq(%w[a])
    end

    it "returns large args intact and accepts a job inserted through the application's own connection " \
       "(docs/sql.md columns)" do
      big = "[\"#{"x" * 70_000}\"]"
      backend.delayed_add(job_id: "big", run_at_ms: 1, job_class: "Work", args_json: big)
      sql("INSERT INTO kaal_delayed_jobs (namespace, job_id, run_at_ms, job_class, queue, args, created_at)" \
          " VALUES (?, 'from-app', 5, 'Mailer', 'mail', '[\"a\"]', 0)", ns)
      expect { backend.delayed_add(job_id: "from-app", run_at_ms: 5, job_class: "X", args_json: "[]") }
        .to raise_error(Kaal::DuplicateJobError)
      expect(backend.delayed_claim(now_ms: 10, limit: 5))
        .to eq([{ job_id: "big", run_at_ms: 1, job_class: "Work", queue: nil, args_json: big },
                { job_id: "from-app", run_at_ms: 5, job_class: "Mailer", queue: "mail", args_json: "[\"a\"]" }])
    end
  end
end

# frozen_string_literal: true

require "securerandom"
require "tmpdir"

# Several processes on one SQLite file: the guarantees a user relies on when
# running more than one `kaal start` on a host, plus the GVL and in-memory
# refusal. Real processes (fork), real file locks, no mocks.
RSpec.describe "SQLite backend across processes" do
  let(:namespace) { "kaal-conc-#{SecureRandom.hex(4)}" }

  temp_sqlite_file "kaal-sqlite-conc"

  before do
    skip "sqlite backend not built" unless Kaal::Native.backends.include?("sqlite")
  end

  def build(**config)
    Kaal::Backend.build(:sqlite, namespace: namespace, config: { path: @path, **config })
  end

  # Runs the block in `count` forked children (each gets its index) and
  # returns what each returned (Marshal through a pipe). A child that raises
  # fails the example with its message. With a `prepare` callable, each child
  # first runs it (e.g. connects), then all start the block together.
  def in_children(count, prepare: nil)
    gate_r, gate_w = IO.pipe
    children = Array.new(count) do |i|
      reader, writer = IO.pipe
      pid = fork do
        reader.close
        gate_w.close
        result = begin
          state = prepare&.call(i)
          gate_r.read # EOF once the parent has forked every child
          [:ok, prepare ? yield(i, state) : yield(i)]
        rescue Exception => e # rubocop:disable Lint/RescueException
          [:error, "#{e.class}: #{e.message}\n#{e.backtrace&.first(5)&.join("\n")}"]
        end
        writer.binmode.write(Marshal.dump(result))
        writer.close
        exit!(0)
      end
      writer.close
      [pid, reader]
    end
    gate_r.close
    gate_w.close
    children.map do |pid, reader|
      data = reader.binmode.read
      reader.close
      Process.wait(pid)
      status, value = Marshal.load(data) # rubocop:disable Security/MarshalLoad
      raise "child failed: #{value}" unless status == :ok

      value
    end
  end

  it "lets exactly one process win each (key, fire time) when all claim the same pairs" do
    build.tap(&:migrate).close # create the file before the race, then drop the handle
    keys = Array.new(8) { |i| "job-#{i}" }
    rounds = 500
    base = 1_800_000_000

    start_at = Time.now.to_f + 1.0 # all children start claiming together, however slow the forks
    won = in_children(4, prepare: ->(_) { build.tap(&:connect) }) do |i, backend|
      mine = []
      sleep(start_at - Time.now.to_f) if start_at > Time.now.to_f
      started = Time.now.to_f
      # Every process offers every round's batch, each batch in a different
      # order, and starts at a different round: a process that runs ahead
      # meets the others' rounds instead of taking every round first.
      (0...rounds).to_a.rotate(i * rounds / 4).each do |r|
        pairs = keys.map { |k| [k, base + r] }.rotate(i * 2)
        won = backend.claim(pairs, lease_ms: 60_000, node: "node-#{i}", now: Time.at(base + r))
        mine.concat(pairs.zip(won).select(&:last).map(&:first))
      end
      finished = Time.now.to_f
      backend.close
      [mine, started, finished]
    end
    spans = won.map { |_, started, finished| started..finished }
    won = won.map(&:first)

    all = won.flatten(1)
    puts "\n  pairs won per process: #{won.map(&:size).inspect}" if ENV["KAAL_SPEC_VERBOSE"]
    expected = keys.product((0...rounds).map { |r| base + r })
    expect(all.size).to eq(expected.size) # no pair won twice ...
    expect(all.sort).to eq(expected.sort) # ... and none lost
    # The processes really competed: their claiming overlapped in time (how
    # the wins split is up to SQLite's lock and busy handler).
    expect(spans.combination(2).any? { |a, b| a.begin < b.end && b.begin < a.end }).to be(true)

    # The log names, for every pair, the process that won it.
    backend = build
    rows = backend.dispatches(limit: 10_000)
    expect(rows.map { |r| [r[:key], r[:fire_time]] }.sort).to eq(expected.sort)
    won.each_with_index do |mine, i|
      expect(rows.select { |r| r[:node] == "node-#{i}" }.map { |r| [r[:key], r[:fire_time]] }.sort)
        .to eq(mine.sort)
    end
    backend.close
  end

  it "hands each due delayed job to exactly one process" do
    backend = build
    ids = Array.new(150) { |i| "delayed-#{i}" }
    now_ms = (Time.now.to_f * 1000).to_i
    ids.each_with_index do |id, i|
      backend.delayed_add(job_id: id, run_at_ms: now_ms - i, job_class: "Job", args_json: "[#{i}]")
    end
    backend.delayed_add(job_id: "later", run_at_ms: now_ms + 3_600_000, job_class: "Job", args_json: "[]")
    backend.close

    got = in_children(4, prepare: ->(_) { build.tap(&:connect) }) do |_, b|
      mine = []
      empty = 0
      while empty < 3
        batch = b.delayed_claim(now_ms: (Time.now.to_f * 1000).to_i, limit: 7)
        empty = batch.empty? ? empty + 1 : 0
        mine.concat(batch.map { |j| j[:job_id] })
      end
      b.close
      mine
    end

    all = got.flatten
    expect(all.size).to eq(ids.size)
    expect(all.sort).to eq(ids.sort)
    backend = build
    expect(backend.delayed_count).to eq(1)
    expect(backend.delayed_list(limit: 10).map { |j| j[:job_id] }).to eq(["later"])
    backend.close
  end

  it "keeps other Ruby threads running while a claim waits for another process's lock" do
    require "sqlite3"
    backend = build
    backend.migrate
    ready_r, ready_w = IO.pipe
    holder = fork do
      ready_r.close
      db = SQLite3::Database.new(@path)
      db.execute("BEGIN EXCLUSIVE")
      ready_w.write("locked")
      ready_w.close
      sleep 1.0
      db.execute("COMMIT")
      db.close
      exit!(0)
    end
    ready_w.close
    expect(ready_r.read).to eq("locked")

    count = 0
    gaps = []
    stop = false
    counter = Thread.new do
      last = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      until stop
        count += 1
        next unless (count % 1000).zero?

        now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        gaps << now - last
        last = now
      end
    end
    wait_until("the counter thread to start") { count.positive? }

    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    count_before = count
    won = backend.claim([["gvl-job", 1_800_000_000]], lease_ms: 60_000, node: "n", now: Time.now)
    waited = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
    counted = count - count_before
    stop = true
    counter.join
    Process.wait(holder)
    backend.close

    expect(won).to eq([true])
    expect(waited).to be >= 0.5 # the claim really waited for the lock
    expect(counted).to be > 10_000 # ... and the other thread ran meanwhile
    expect(gaps.max).to be < 0.4 # ... all along, not in one burst at the end
  end

  it "fails with a clear error when the lock is held longer than command_timeout_ms" do
    require "sqlite3"
    backend = build(command_timeout: 0.2)
    backend.migrate
    db = SQLite3::Database.new(@path)
    db.execute("BEGIN EXCLUSIVE")
    expect { backend.claim([["j", 1]], lease_ms: 1000, node: "n", now: Time.now) }
      .to raise_error(Kaal::BackendError, /locked/)
    db.execute("ROLLBACK")
    expect(backend.claim([["j", 1]], lease_ms: 1000, node: "n", now: Time.now)).to eq([true])
  ensure
    db&.close
    backend&.close
  end

  it "refuses an in-memory database with an error that says to use a file" do
    [":memory:", "file::memory:?cache=shared", "file:kaal?mode=memory"].each do |path|
      expect do
        b = Kaal::Backend.build(:sqlite, namespace: namespace, config: { path: path })
        b.ping
      end.to raise_error(Kaal::ConfigurationError, /memory/)
    end
  end

  it "reconnects in a forked child and leaves the parent's connection working" do
    backend = build
    backend.claim([["fork", 1]], lease_ms: 1000, node: "parent", now: Time.now)
    child = in_children(1) do
      backend.claim([["fork", 2]], lease_ms: 1000, node: "child", now: Time.now)
    end
    expect(child).to eq([[true]])
    expect(backend.claim([["fork", 1], ["fork", 2], ["fork", 3]], lease_ms: 1000, node: "parent",
                                                                  now: Time.now)).to eq([false, false, true])
    backend.close
  end
end

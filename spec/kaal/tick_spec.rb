# frozen_string_literal: true

require_relative "runtime_helper"

# Counts Kaal::Cron#next_epoch calls per cron while a spec collects them.
module SpecCronCallCounter
  def next_epoch(*args)
    calls = Thread.current[:kaal_spec_cron_calls]
    calls[self] += 1 if calls
    super
  end
end

RSpec.describe "Kaal.tick!" do
  include KaalRuntimeHelper

  let(:t0) { at("2026-06-01T12:00:00") }

  def fired(dispatches)
    dispatches.map { |d| [d.key, d.fire_time.to_i] }
  end

  def register_every_minute(key = "m", **opts)
    Kaal.register(key: key, cron: "* * * * *", job_class: SpecRecorderJob, **opts)
  end

  after { SpecRecorderJob.drain }

  describe "window" do
    before { Kaal.configure { |c| c.enable_dispatch_recovery = false } }

    it "dispatches every fire time in (last tick, now], once, in fire-time order" do
      Kaal.register(key: "b", cron: "*/10 * * * * *", job_class: SpecRecorderJob)
      Kaal.register(key: "a", cron: "*/15 * * * * *", job_class: SpecRecorderJob)
      expect(fired(Kaal.tick!(now: t0))).to eq([["a", t0], ["b", t0]])
      expect(fired(Kaal.tick!(now: t0 + 30))).to eq(
        [["b", t0 + 10], ["a", t0 + 15], ["b", t0 + 20], ["a", t0 + 30], ["b", t0 + 30]]
      )
      expect(Kaal.tick!(now: t0 + 30)).to be_empty
      expect(Kaal.tick!(now: t0 + 30.9)).to be_empty
      expect(SpecRecorderJob.drain.size).to eq(7)
    end

    it "keeps fire-time order, ties in key order, over many ticks and mixed schedules" do
      crons = ["* * * * * *", "*/2 * * * * *", "*/3 * * * * *", "*/7 * * * * *"]
      (0...60).to_a.shuffle(random: Random.new(7)).each do |i|
        Kaal.register(key: "k#{i}", cron: crons[i % 4], job_class: SpecRecorderJob)
      end
      [0, 1, 2, 5, 6, 7, 20, 21, 22].each do |s|
        got = fired(Kaal.tick!(now: t0 + s))
        expect(got).to eq(got.sort_by { |key, epoch| [epoch, key] })
        expect(got.map(&:last).uniq).to all(be <= t0 + s)
      end
      SpecRecorderJob.drain
    end

    it "dispatches jobs defined alike in key order on every tick, whatever order they were registered in" do
      (0...40).to_a.shuffle(random: Random.new(3)).each do |i|
        Kaal.register(key: format("same-%02d", i), cron: "* * * * * *", job_class: SpecRecorderJob)
      end
      [0, 1, 2].each do |s|
        got = fired(Kaal.tick!(now: t0 + s))
        expect(got.size).to eq(40)
        expect(got.map(&:first)).to eq((0...40).map { |i| format("same-%02d", i) })
      end
      SpecRecorderJob.drain
    end

    it "records each run in the dispatch log with the node id" do
      register_every_minute
      Kaal.tick!(now: t0)
      expect(Kaal.dispatched?("m", Time.at(t0))).to be(true)
      expect(Kaal.dispatched?("m", t0 + 60)).to be(false)
      row = Kaal.dispatches(key: "m").first
      expect(row).to include(key: "m", status: "dispatched", node: Kaal.node_id)
    end

    it "looks ahead window_lookahead seconds" do
      Kaal.configure { |c| c.window_lookahead = 30 }
      register_every_minute
      expect(fired(Kaal.tick!(now: t0 + 35))).to eq([["m", t0 + 60]])
    end

    it "after a stall longer than window_lookback, catches up only the lookback window" do
      register_every_minute
      Kaal.tick!(now: t0)
      expect(fired(Kaal.tick!(now: t0 + 3600))).to eq([["m", t0 + 3540], ["m", t0 + 3600]])
    end

    it "costs nothing for jobs that are not due (heap)" do
      20_000.times { |i| Kaal.register(key: "yearly-#{i}", cron: "0 0 1 1 *", job_class: SpecRecorderJob) }
      Kaal.register(key: "every-second", cron: "* * * * * *", job_class: SpecRecorderJob)
      Kaal.tick!(now: t0)
      calls = Hash.new(0)
      Kaal::Cron.prepend(SpecCronCallCounter) unless Kaal::Cron <= SpecCronCallCounter
      Thread.current[:kaal_spec_cron_calls] = calls
      begin
        100.times { |i| Kaal.tick!(now: t0 + 1 + i) }
      ensure
        Thread.current[:kaal_spec_cron_calls] = nil
      end
      # only the due job's cron was evaluated, once per tick; the 20k yearly jobs never
      expect(calls.keys).to eq([Kaal.registry["every-second"].cron])
      expect(calls.values.sum).to eq(100)
      expect(Kaal.scheduler.next_run_epoch("yearly-7")).to eq(at("2027-01-01T00:00:00"))
    end
  end

  describe "claims" do
    before { Kaal.configure { |c| c.enable_dispatch_recovery = false } }

    it "dispatches only the pairs this node claimed" do
      register_every_minute("mine")
      register_every_minute("theirs")
      # another node already claimed (theirs, t0)
      expect(Kaal.backend.claim([["theirs", t0]], lease_ms: 125_000, node: "other", now: t0)).to eq([true])
      expect(fired(Kaal.tick!(now: t0))).to eq([["mine", t0]])
      expect(Kaal.backend.dispatch_status("theirs", t0)).to eq("claimed")
    end

    it "claims all due pairs of a tick in one backend call" do
      flaky = SpecFlakyBackend.new(Kaal.backend)
      registry = Kaal.registry
      5.times { |i| register_every_minute("j#{i}") }
      sched = Kaal::Scheduler.new(config: Kaal.configuration, registry: registry, backend: flaky,
                                  logger: ->(*) {})
      expect(sched.tick(t0, wait: true).size).to eq(5)
      expect(flaky.calls[:claim_columns]).to eq(1)
    end

    it "claims a big tick in chunks from a node-dependent start; a chunk that fails fails the tick after the won runs" do
      n = Kaal::Scheduler::CLAIM_SPLIT + 500
      n.times { |i| register_every_minute(format("j%05d", i)) }
      counting = SpecFlakyBackend.new(Kaal.backend)
      calls = 0
      first_keys = nil
      counting.define_singleton_method(:claim_columns) do |keys, fires, **kw|
        calls += 1
        first_keys ||= keys
        raise Kaal::ConnectionError, "simulated outage (second chunk)" if calls == 2

        Kaal.backend.claim_columns(keys, fires, **kw)
      end
      sched = Kaal::Scheduler.new(config: Kaal.configuration, registry: Kaal.registry, backend: counting,
                                  logger: ->(*) {})
      expect(sched.tick(t0, wait: true)).to eq([]) # failed closed
      sched.pool.wait_idle(10)
      first_chunk = Kaal.dispatches(limit: n).map { |r| r[:key] }
      expect(first_chunk).to match_array(first_keys) # the won chunk ran
      expect([500, Kaal::Scheduler::CLAIM_CHUNK]).to include(first_keys.size)
      expect(Kaal.dispatches(limit: n).map { |r| r[:status] }.uniq).to eq(["dispatched"])
      again = fired(sched.tick(t0 + 1, wait: true)) # the backend is back: the rest, once
      expect(again.map(&:first).sort).to eq(Array.new(n) { |i| format("j%05d", i) } - first_chunk)
      expect(calls).to eq(3) # what is left fits one call
      other = Kaal::Scheduler.new(config: Kaal.configuration, registry: Kaal.registry, backend: Kaal.backend,
                                  logger: ->(*) {})
      expect(other.tick(t0 + 1, wait: true)).to eq([]) # another node: nothing left to win
    end

    it "cleans the dispatch log once a minute and after every CLEANUP_RUNS runs won" do
      stub_const("Kaal::Scheduler::CLEANUP_RUNS", 3)
      %w[a b].each { |key| Kaal.register(key: key, cron: "* * * * * *", job_class: SpecRecorderJob) }
      counting = SpecFlakyBackend.new(Kaal.backend)
      sched = Kaal::Scheduler.new(config: Kaal.configuration, registry: Kaal.registry, backend: counting,
                                  logger: ->(*) {})
      cleanups = (0..4).map do |i|
        sched.tick(t0 + i, wait: true)
        counting.calls[:cleanup]
      end
      expect(cleanups).to eq([1, 1, 2, 2, 3]) # the first tick; then after 4 runs won (2 a tick)
      SpecRecorderJob.drain
    end

    it "spreads the first chunks of a big tick over the live nodes by their place among them" do
      names = %w[node-c node-a node-b]
      now = Time.now.to_i
      names.each { |name| Kaal.backend.heartbeat(name, "{}", now: now, ttl: 60) }
      firsts = names.to_h do |name|
        config = Kaal.configuration.dup
        config.node_id = name
        sched = Kaal::Scheduler.new(config: config, registry: Kaal.registry, backend: Kaal.backend, logger: ->(*) {})
        [name, sched.send(:first_chunk, 10, now)]
      end
      expect(firsts).to eq("node-a" => 0, "node-b" => 3, "node-c" => 6)
    end

    it "never runs again what the dispatch log records (a second node, same backend)" do
      register_every_minute
      Kaal.tick!(now: t0)
      other = Kaal::Scheduler.new(config: Kaal.configuration, registry: Kaal.registry, backend: Kaal.backend,
                                  logger: ->(*) {})
      expect(other.tick(t0, wait: true)).to be_empty
    end
  end

  describe "backend outage" do
    let(:flaky) { SpecFlakyBackend.new(Kaal.backend) }
    let(:logs) { [] }
    let(:sched) do
      Kaal::Scheduler.new(config: Kaal.configuration, registry: Kaal.registry, backend: flaky,
                          logger: ->(level, msg) { logs << [level, msg] })
    end

    before { Kaal.configure { |c| c.enable_dispatch_recovery = false } }

    it "fails closed, logs one line, backs off, then catches up from the lookback window" do
      register_every_minute
      expect(fired(sched.tick(t0, wait: true))).to eq([["m", t0]])
      flaky.down!
      expect(sched.tick(t0 + 60, wait: true)).to be_empty
      expect(sched.tick(t0 + 90, wait: true)).to be_empty
      expect(SpecRecorderJob.drain.size).to eq(1)
      # The warnings are the log lines of backend_error events (Kaal.logger).
      warnings = log_io.string.lines.grep(/ WARN kaal: /).map { |l| l.split(" WARN kaal: ", 2).last }
      expect(warnings.size).to eq(2)
      # A tick called directly is one attempt: no "retrying" (the loop backs off 1 s, then 2 s).
      expect(warnings).to all(match(/\Abackend memory unavailable, nothing dispatched \(fail closed\): simulated outage/))
      expect(sched.failures).to eq(2)
      expect(sched.send(:backoff)).to eq(2.0)

      flaky.up!
      expect(fired(sched.tick(t0 + 125, wait: true))).to eq([["m", t0 + 60], ["m", t0 + 120]])
      expect(sched.failures).to eq(0)
      expect(logs.map(&:last)).to include(a_string_including("is back after 2 failed attempts"))
    end

    it "keeps the due jobs scheduled when the claim fails with an error that is not an outage" do
      register_every_minute
      expect(fired(sched.tick(t0, wait: true))).to eq([["m", t0]])
      flaky.down!(RuntimeError, only: :claim_columns)
      expect { sched.tick(t0 + 60, wait: true) }.to raise_error(RuntimeError, /simulated outage \(claim_columns\)/)
      flaky.up!
      expect(fired(sched.tick(t0 + 61, wait: true))).to eq([["m", t0 + 60]])
    end

    it "keeps the jobs waiting for their first placement when the first tick fails with any error" do
      register_every_minute
      flaky.down!(RuntimeError, only: :claim_columns)
      expect { sched.tick(t0, wait: true) }.to raise_error(RuntimeError)
      flaky.up!
      expect(fired(sched.tick(t0 + 1, wait: true))).to eq([["m", t0]])
    end

    it "catches up the runs missed when the backend was down at the node's very first tick" do
      Kaal.register(key: "s", cron: "*/10 * * * * *", job_class: SpecRecorderJob)
      flaky.down!
      expect(sched.tick(t0, wait: true)).to be_empty
      expect(sched.tick(t0 + 20, wait: true)).to be_empty
      flaky.up!
      expect(fired(sched.tick(t0 + 40, wait: true))).to eq(
        [["s", t0], ["s", t0 + 10], ["s", t0 + 20], ["s", t0 + 30], ["s", t0 + 40]]
      )
      expect(fired(sched.tick(t0 + 50, wait: true))).to eq([["s", t0 + 50]])
    end

    it "catches up at most max_catch_up_runs runs per job (the latest), all jobs in fire-time order" do
      Kaal.configure { |c| c.max_catch_up_runs = 3 }
      Kaal.register(key: "a", cron: "*/10 * * * * *", job_class: SpecRecorderJob)
      Kaal.register(key: "b", cron: "*/20 * * * * *", job_class: SpecRecorderJob)
      expect(fired(sched.tick(t0, wait: true))).to eq([["a", t0], ["b", t0]])
      flaky.down!
      expect(sched.tick(t0 + 30, wait: true)).to be_empty
      flaky.up!
      expect(fired(sched.tick(t0 + 60, wait: true))).to eq(
        [["b", t0 + 20], ["a", t0 + 40], ["b", t0 + 40], ["a", t0 + 50], ["a", t0 + 60], ["b", t0 + 60]]
      )
    end

    it "bounds that catch-up by window_lookback" do
      Kaal.register(key: "s", cron: "*/10 * * * * *", job_class: SpecRecorderJob)
      flaky.down!
      expect(sched.tick(t0, wait: true)).to be_empty
      flaky.up!
      expect(fired(sched.tick(t0 + 600, wait: true)).map(&:last)).to eq((490..600).step(10).map { |s| t0 + s }) # (now - window_lookback, now]
    end

    it "backs off exponentially up to max_backoff in the loop" do
      Kaal.configure { |c| c.max_backoff = 4 }
      expect([1, 2, 3, 4, 5].map { |n| sched.instance_variable_set(:@failures, n) && sched.send(:backoff) })
        .to eq([1.0, 2.0, 4.0, 4.0, 4.0])
    end
  end

  describe "recovery at start (catch_up)" do
    let(:now) { t0 + 30 * 60 + 30 } # 12:30:30, the node was down since before 12:00

    # The jobs ran before: the dispatch log has a run of "m" (yesterday 12:01) and of another job.
    def seed_history(key = "m", fire = t0 - 86_340)
      Kaal.backend.claim([[key, fire]], lease_ms: 1000, node: "old", now: fire)
      Kaal.backend.record(key, fire, "dispatched", node: "old", now: fire)
      Kaal.backend.claim([["earlier-job", t0 - 86_000]], lease_ms: 1000, node: "old", now: t0 - 86_000)
    end

    before { |ex| seed_history unless ex.metadata[:fresh] }

    it "catches up nothing in a namespace that never ran (first deploy)", :fresh do
      register_every_minute(catch_up: :all)
      expect(Kaal.tick!(now: now)).to be_empty
      expect(fired(Kaal.tick!(now: t0 + 1860))).to eq([["m", t0 + 1860]])
    end

    it "fires the runs of the tick_interval before a first tick, also without history (`kaal tick` from cron starts late)", :fresh do
      Kaal.configure { |c| c.tick_interval = 5 }
      register_every_minute
      expect(fired(Kaal.tick!(now: t0 + 3.5))).to eq([["m", t0]])
    end

    it "takes from that window only a run the first tick would otherwise miss (no start burst)", :fresh do
      Kaal.configure { |c| c.tick_interval = 5 }
      Kaal.register(key: "s", cron: "* * * * * *", job_class: SpecRecorderJob)
      Kaal.register(key: "all", cron: "* * * * * *", job_class: SpecRecorderJob, catch_up: :all)
      Kaal.register(key: "x", cron: "58 59 11 * * *", job_class: SpecRecorderJob) # 11:59:58, before the start
      expect(fired(Kaal.tick!(now: t0 + 1.5))).to eq(
        [["all", t0 - 3], ["all", t0 - 2], ["x", t0 - 2], ["all", t0 - 1], ["all", t0], ["all", t0 + 1], ["s", t0 + 1]]
      )
    end

    it "latest (default): the last missed run only" do
      register_every_minute
      expect(fired(Kaal.tick!(now: now))).to eq([["m", t0 + 1800]])
    end

    it "all: every missed run within recovery_window, bounded by max_catch_up_runs" do
      Kaal.configure { |c| c.max_catch_up_runs = 10 }
      seed_history
      register_every_minute(catch_up: :all)
      expect(fired(Kaal.tick!(now: now)).map(&:last)).to eq((21..30).map { |m| t0 + (m * 60) })
    end

    it "none: nothing missed, only what is due now" do
      register_every_minute(catch_up: "none")
      expect(Kaal.tick!(now: now)).to be_empty
      expect(fired(Kaal.tick!(now: t0 + 1860))).to eq([["m", t0 + 1860]])
    end

    it "uses the configured default and respects recovery_window" do
      Kaal.configure { |c| c.catch_up = :all; c.recovery_window = 125 }
      seed_history
      register_every_minute
      expect(fired(Kaal.tick!(now: now)).map(&:last)).to eq([t0 + 1740, t0 + 1800])
    end

    it "never goes back to or before the latest run the dispatch log has for the job" do
      Kaal.configure { |c| c.recovery_window = 400 } # missed: 12:24 .. 12:30
      register_every_minute(catch_up: :all)
      seed_history("m", t0 + 1560) # 12:26 ran on another node
      expect(fired(Kaal.tick!(now: now)).map(&:last)).to eq([t0 + 1620, t0 + 1680, t0 + 1740, t0 + 1800])
    end

    it "catches up nothing for a job the dispatch log has never seen, though other jobs ran (a job added to a running cluster)" do
      register_every_minute
      Kaal.register(key: "new:noon", cron: "0 12 * * *", job_class: SpecRecorderJob) # today 12:00 is before it existed
      expect(fired(Kaal.tick!(now: now))).to eq([["m", t0 + 1800]])
      expect(fired(Kaal.tick!(now: now + 86_400 - 1830)).select { |k, _| k == "new:noon" }).to eq([["new:noon", t0 + 86_400]]) # then on schedule
    end

    it "treats a job whose latest run is not a fire time of its cron as a new schedule" do
      Kaal.register(key: "m", cron: "0 */2 * * *", job_class: SpecRecorderJob) # was every minute (yesterday 12:01)
      expect(Kaal.tick!(now: now)).to be_empty # not today 12:00
    end

    it "never dispatches a fire time earlier than one already dispatched (a node starting just after another)" do
      Kaal.configure { |c| c.tick_interval = 5 }
      Kaal.register(key: "a", cron: "* * * * * *", job_class: SpecRecorderJob)
      seed_history("a", t0 - 3600)
      seed_history("a", t0 + 26) # the other node's start tick
      expect(fired(Kaal.tick!(now: t0 + 27))).to eq([["a", t0 + 27]]) # not a @ 12:00:22
    end

    it "reads the latest runs of all jobs in one batched backend call, not one per job" do
      Kaal.configure { |c| c.catch_up = :all; c.recovery_window = 125 }
      seed_history
      40.times { |i| seed_history("j#{i}", t0 + 1740) if i.even? }
      register_every_minute
      40.times { |i| Kaal.register(key: "j#{i}", cron: "* * * * *", job_class: SpecRecorderJob) }
      counting = SpecFlakyBackend.new(Kaal.backend)
      sched = Kaal::Scheduler.new(config: Kaal.configuration, registry: Kaal.registry, backend: counting,
                                  logger: ->(*) {})
      runs = fired(sched.tick(now, wait: true))
      expect(counting.calls[:latest_fires]).to eq(1)
      expect(counting.calls[:dispatches]).to eq(1) # is there any history at all
      expect(runs.count { |k, _| k == "m" }).to eq(2) # 12:29 and 12:30, after yesterday's run
      expect(runs.select { |k, _| k == "j0" }.map(&:last)).to eq([t0 + 1800]) # after its 12:29 run
      expect(runs.select { |k, _| k == "j1" }).to be_empty # never ran: a new job catches nothing up
    end

    it "does nothing missed when enable_dispatch_recovery is false" do
      Kaal.configure { |c| c.enable_dispatch_recovery = false }
      register_every_minute
      expect(Kaal.tick!(now: now)).to be_empty
    end
  end

  describe "worker pool" do
    before { Kaal.configure { |c| c.enable_dispatch_recovery = false; c.worker_threads = 2 } }

    it "runs plain jobs off the tick thread, so a slow job never delays the tick" do
      gate = Queue.new
      Kaal.register(key: "slow", cron: "* * * * * *") { gate.pop }
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      first = Kaal.tick!(now: t0, wait: false)
      second = Kaal.tick!(now: t0 + 1, wait: false)
      elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
      expect(elapsed).to be < 0.5
      expect((first + second).map(&:status)).to eq(%w[pending pending])
      2.times { gate << :go }
      expect(Kaal.scheduler.pool.wait_idle(5)).to be(true)
      expect((first + second).map(&:status)).to eq(%w[dispatched dispatched])
    end

    it "records a job that raises as failed, logs it, and goes on" do
      Kaal.register(key: "boom", cron: "* * * * * *") { raise ArgumentError, "kaboom" }
      Kaal.register(key: "fine", cron: "* * * * * *", job_class: SpecRecorderJob)
      result = Kaal.tick!(now: t0)
      expect(result.map { |d| [d.key, d.status] }).to eq([%w[boom failed], %w[fine dispatched]])
      expect(result.first.error).to eq("ArgumentError: kaboom")
      expect(Kaal.backend.dispatch_status("boom", t0)).to eq("failed")
      expect(Kaal.dispatches(key: "boom").first[:error]).to include("kaboom")
      expect(log_io.string).to match(/ERROR kaal: boom @ 2026-06-01T12:00:00Z failed in .* ms \(node .*, idempotency [0-9a-f]{12}\): ArgumentError: kaboom/)
      expect(Kaal.tick!(now: t0 + 1).map(&:key)).to eq(%w[boom fine])
    end

    it "keeps passwords out of the recorded error and the log line" do
      Kaal.register(key: "db", cron: "* * * * * *") do
        raise IOError, "cannot reach postgres://app:hunter2@db:5432/x (password=hunter2)"
      end
      result = Kaal.tick!(now: t0)
      expect(result.first.error).to eq("IOError: cannot reach postgres://app:[REDACTED]@db:5432/x (password=[REDACTED])")
      expect(Kaal.dispatches(key: "db").first[:error]).not_to include("hunter2")
      expect(log_io.string).to include("postgres://app:[REDACTED]@db").and(satisfy { |s| !s.include?("hunter2") })
    end

    it "records and logs a failure whose message is not valid UTF-8" do
      Kaal.register(key: "bin", cron: "* * * * * *") { raise IOError, (+"read \xFF\xFE token=abc").force_encoding("UTF-8") }
      Kaal.register(key: "latin", cron: "* * * * * *") { raise IOError, "caf\xE9".dup.force_encoding("ISO-8859-1") }
      result = Kaal.tick!(now: t0)
      expect(result.map { |d| [d.key, d.status, d.error] }).to eq(
        [["bin", "failed", "IOError: read \uFFFD\uFFFD token=[REDACTED]"], %w[latin failed IOError:\ café]]
      )
      expect(Kaal.dispatches(status: "failed").map { |r| r[:error] }).to contain_exactly(
        "IOError: read \uFFFD\uFFFD token=[REDACTED]", "IOError: café"
      )
      expect(log_io.string).to include("bin @ 2026-06-01T12:00:00Z failed").and include("IOError: café")
    end

    it "logs one line per dispatch: key, fire time, idempotency prefix, node, outcome, duration" do
      register_every_minute
      Kaal.tick!(now: t0)
      idem = Kaal.idempotency_key("m", t0)[0, 12]
      expect(log_io.string).to include("INFO kaal: m @ 2026-06-01T12:00:00Z dispatched in ")
      expect(log_io.string).to match(/ ms \(node #{Regexp.escape(Kaal.node_id)}, idempotency #{idem}\)/)
    end
  end

  describe "start! / stop!" do
    it "wakes for a run due before the next aligned tick (every second with tick_interval 5)" do
      Kaal.configure { |c| c.tick_interval = 5; c.enable_dispatch_recovery = false }
      ran = Queue.new
      Kaal.register(key: "s", cron: "* * * * * *") { |fire_time:, **| ran << [fire_time.to_i, Time.now.to_f] }
      started = Time.now.to_i
      Kaal.start!
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
      sleep 0.05 until ran.size >= 8 || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      Kaal.stop!(timeout: 5)
      runs = Array.new(ran.size) { ran.pop }
      # the start tick also takes the runs of the tick_interval before it
      lateness = runs.select { |fire, _| fire > started }.map { |fire, at| at - fire }
      expect(lateness.size).to be >= 3
      expect(lateness.max).to be < 2.5 # far below the 5 s a tick_interval-bound loop would show
    end

    it "ticks on its own and stops gracefully, waiting for running jobs" do
      Kaal.configure { |c| c.tick_interval = 0.2; c.shutdown_timeout = 5; c.enable_dispatch_recovery = false }
      done = Queue.new
      Kaal.register(key: "s", cron: "* * * * * *") { sleep 0.3; done << :finished }
      Kaal.start!
      expect(Kaal.running?).to be(true)
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 3
      sleep 0.05 until Kaal.dispatches(key: "s").any? || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      expect(Kaal.stop!(timeout: 5)).to be(true)
      expect(Kaal.running?).to be(false)
      expect(done.size).to be >= 1
      expect(Kaal.dispatches(key: "s").map { |r| r[:status] }).to all(eq("dispatched"))
    end

    it "gives up on jobs still running at the timeout" do
      Kaal.configure { |c| c.tick_interval = 0.2; c.enable_dispatch_recovery = false }
      Kaal.register(key: "stuck", cron: "* * * * * *") { sleep 30 }
      Kaal.start!
      sleep 0.05 until Kaal.scheduler.pool.pending.positive?
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      expect(Kaal.stop!(timeout: 0.3)).to be(false)
      expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).to be < 2
    end
  end

  describe "housekeeping" do
    before { Kaal.configure { |c| c.enable_dispatch_recovery = false; c.dispatch_log_retention = 3600; c.cleanup_batch_size = 2 } }

    it "heartbeats every tick and cleans the dispatch log in bounded batches" do
      b = Kaal.backend
      4.times do |i|
        b.claim([["old", t0 - 7200 + i]], lease_ms: 1000, node: "n", now: t0 - 7200)
        b.record("old", t0 - 7200 + i, "dispatched", node: "n", now: t0 - 7200)
      end
      register_every_minute
      Kaal.tick!(now: t0)
      expect(b.nodes(since: t0 - 1).map { |n| n[:node] }).to eq([Kaal.node_id])
      expect(JSON.parse(b.nodes(since: t0 - 1).first[:info])).to include("pid" => Process.pid, "jobs" => 1)
      expect(b.dispatches(key: "old").size).to eq(2) # one batch of 2
      Kaal.tick!(now: t0 + 30)
      expect(b.dispatches(key: "old").size).to eq(2) # at most once a minute
      Kaal.tick!(now: t0 + 61)
      expect(b.dispatches(key: "old")).to be_empty
      expect(b.dispatches(key: "m").size).to eq(2) # recent rows stay
    end
  end

  it "reloads a changed scheduler file while running; a removed job stops firing" do
    in_tmpdir do
      write("config/kaal-scheduler.yml", "defaults:\n  jobs:\n    - {key: a, cron: '* * * * * *', job_class: SpecRecorderJob}\n" \
                                          "    - {key: b, cron: '* * * * * *', job_class: SpecRecorderJob}\n")
      Kaal.configure { |c| c.tick_interval = 0.2; c.enable_dispatch_recovery = false }
      Kaal.start!
      expect(Kaal.registry.jobs.keys.sort).to eq(%w[a b])
      write("config/kaal-scheduler.yml", "defaults:\n  jobs:\n    - {key: a, cron: '* * * * * *', job_class: SpecRecorderJob}\n")
      File.utime(Time.now + 5, Time.now + 5, "config/kaal-scheduler.yml")
      # The registry changes before the reload is logged: wait for the log line.
      wait_until("the reload log line") { log_io.string.include?("reloaded config/kaal-scheduler.yml: 1 jobs") }
      expect(Kaal.registry.jobs.keys).to eq(%w[a])
      since = Kaal::Clock.now.floor + 1 # a tick already under way may still finish b's current second
      wait_until("two runs of a after the reload") do
        Kaal.dispatches(key: "a", status: "dispatched", limit: 100).count { |r| r[:fire_time] >= since } >= 2
      end
      Kaal.stop!
      expect(Kaal.dispatches(key: "b", limit: 100).map { |r| r[:fire_time] }.select { |f| f >= since }).to be_empty
      expect(Kaal.dispatches(key: "a", limit: 100).map { |r| r[:fire_time] }.select { |f| f >= since }).not_to be_empty
    end
  end

  it "applies KAAL_TEST_CLOCK_OFFSET to kaal's notion of now" do
    ENV["KAAL_TEST_CLOCK_OFFSET"] = "-3600.5"
    expect(Kaal::Clock.now).to be_within(1).of(Time.now.to_f - 3600.5)
    ENV["KAAL_TEST_CLOCK_OFFSET"] = "soon"
    expect { Kaal::Clock.now }.to raise_error(Kaal::ConfigurationError, /KAAL_TEST_CLOCK_OFFSET/)
  ensure
    ENV.delete("KAAL_TEST_CLOCK_OFFSET")
  end
end

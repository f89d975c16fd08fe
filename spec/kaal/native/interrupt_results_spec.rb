# frozen_string_literal: true

require "spec_helper"
require "tmpdir"

# A call that completes while its thread is being interrupted cannot hand its
# results to Ruby (the interrupt is raised instead). What it took must not
# vanish: delayed jobs go back to the store, won pairs are recorded "failed"
# with the reason. The memory store never stops for an interrupt, so an
# interrupt raised while its call runs lands after the work is done; SQLite
# stops (a statement rolls back) or finishes, depending on where it lands,
# and neither may lose a job.
RSpec.describe "Results of a backend call completed during an interrupt" do
  # Runs the block in a thread and raises IOError in it `delay` seconds after
  # the call started running without the GVL (Thread#status "sleep").
  # Returns :interrupted when the binding raised it (the native method on top
  # of the backtrace), :late when Ruby raised it after the call had handed
  # its results over (lost in Ruby, out of the binding's reach; only on a
  # loaded machine), or the block's value when the call finished first.
  def interrupt_during(delay, &call)
    thread = Thread.new(&call)
    thread.report_on_exception = false
    Thread.pass until thread.status == "sleep" || !thread.alive?
    sleep delay
    thread.raise(IOError, "stop") if thread.alive?
    thread.value
  rescue IOError => e
    e.backtrace.first.include?("`_") ? :interrupted : :late
  end

  # After an attempt that handed jobs to Ruby: the store holds all of ids again.
  def restore_jobs(backend, ids)
    backend.delayed_claim(now_ms: 10**12, limit: 100_000)
    add_jobs(backend, ids)
  end

  # Interrupt points tried in turn: an interrupt may land before the call
  # reached the store (nothing taken) or after it returned (results
  # delivered); the memory examples try until one lands inside the call.
  INTERRUPT_DELAYS = [0.005, 0.002, 0.01, 0.001, 0.02, 0.0005, 0.003, 0.04, 0, 0.008].freeze

  # How long the memory examples keep trying (see first_inside).
  INSIDE_WITHIN = 120

  def add_jobs(backend, ids)
    ids.each { |id| backend.delayed_add(job_id: id, run_at_ms: 1000, job_class: "W", args_json: "[]") }
  end

  describe "on the memory store (the call always completes)" do
    let(:backend) { Kaal::Backend.build(:memory, namespace: "ns") }

    # The first attempt whose interrupt landed inside the call: yields each
    # attempt's index and delay (INTERRUPT_DELAYS in turn, again and again),
    # the block checks that the attempt lost nothing wherever the interrupt
    # landed and says whether it landed inside. Where it lands depends on
    # how the machine schedules two threads (on a loaded machine the call
    # may be preempted before it reaches the store, or the raising thread
    # may wake only after the call returned), so no fixed number of
    # attempts is sure to see one inside: the attempts go on until one
    # does, within INSIDE_WITHIN seconds. Nearly every attempt lands inside
    # (the first, in 11 of 12 runs under a load average of 18 on 2 cores).
    def first_inside
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + INSIDE_WITHIN
      outcomes = Hash.new(0)
      0.step do |i|
        inside = yield(i, INTERRUPT_DELAYS[i % INTERRUPT_DELAYS.size], outcomes)
        return i if inside
        next if Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline

        raise "no interrupt landed inside the call in #{i + 1} attempts (#{INSIDE_WITHIN} s): #{outcomes}"
      end
    end

    # :interrupted, :late or :finished (the call returned first).
    def kind(outcome)
      %i[interrupted late].include?(outcome) ? outcome : :finished
    end

    it "puts the delayed jobs back" do
      ids = Array.new(20_000) { |i| "j#{i}" }
      add_jobs(backend, ids)
      first_inside do |_, delay, outcomes|
        outcome = interrupt_during(delay) { backend.delayed_claim(now_ms: 10**12, limit: 100_000) }
        outcomes[kind(outcome)] += 1
        next true if outcome == :interrupted && backend.delayed_count == 20_000

        expect(outcome).not_to eq(:interrupted)
        restore_jobs(backend, ids)
        false
      end
      expect(backend.delayed_claim(now_ms: 10**12, limit: 100_000).map { |j| j[:job_id] }).to match_array(ids)
    end

    it "records won pairs as failed, with the reason" do
      failed = nil
      fire = first_inside do |i, delay, outcomes|
        pairs = Array.new(50_000) { |k| ["k#{k}", 60 + i] }
        outcome = interrupt_during(delay) { backend.claim(pairs, lease_ms: 60_000, node: "n1", now: 60) }
        outcomes[kind(outcome)] += 1
        failed = backend.dispatches(status: "failed", limit: 100_000).select { |r| r[:fire_time] == 60 + i }
        if outcome == :interrupted && failed.empty? # landed before the call took anything
          expect(backend.claim(pairs.first(1), lease_ms: 60_000, node: "n2", now: 60)).to eq([true])
        end
        outcome == :interrupted && failed.any?
      end
      expect(failed.size).to eq(50_000)
      expect(failed.map { |r| r[:error] }.uniq).to eq(["interrupted after the claim, before the hand-off (not run)"])
      expect(backend.claim([["k1", 60 + fire]], lease_ms: 60_000, node: "n2", now: 60)).to eq([false])
    end
  end

  describe "on SQLite (the call stops or completes)" do
    before { skip "the sqlite backend is not compiled in" unless Kaal::Native.backends.include?("sqlite") }

    around do |example|
      Dir.mktmpdir("kaal-interrupt-") do |dir|
        @path = File.join(dir, "kaal.sqlite3")
        example.run
      end
    end

    let(:backend) do
      Kaal::Backend.build(:sqlite, namespace: "ns", config: { path: @path, command_timeout: 10 }).tap(&:migrate)
    end

    it "keeps every delayed job, wherever in the claim the interrupt lands" do
      ids = Array.new(20_000) { |i| "j#{i}" }
      add_jobs(backend, ids)
      INTERRUPT_DELAYS.each do |delay|
        outcome = interrupt_during(delay) { backend.delayed_claim(now_ms: 10**12, limit: 100_000) }
        if outcome == :interrupted
          expect(backend.delayed_count).to eq(20_000), "after an interrupt at #{delay} s"
        else
          restore_jobs(backend, ids)
        end
      end
      expect(backend.delayed_claim(now_ms: 10**12, limit: 100_000).map { |j| j[:job_id] }).to match_array(ids)
    end

    it "leaves every pair claimed and handed over, recorded failed, or free, wherever the interrupt lands" do
      INTERRUPT_DELAYS.first(6).each_with_index do |delay, i|
        pairs = Array.new(20_000) { |k| ["k#{k}", 60 + i] }
        outcome = interrupt_during(delay) { backend.claim(pairs, lease_ms: 60_000, node: "n1", now: 60) }
        again = backend.claim(pairs, lease_ms: 60_000, node: "n2", now: 60)
        rows = backend.dispatches(limit: 100_000).select { |r| r[:fire_time] == 60 + i }
        if outcome == :interrupted
          failed = rows.count { |r| r[:status] == "failed" && r[:node] == "n1" }
          # all stopped (the second claim wins them all) or all recorded failed
          expect([again.count(true), failed]).to eq([20_000, 0]).or eq([0, 20_000])
        elsif outcome != :late
          expect(outcome).to all(be(true))
          expect(again).to all(be(false))
        end
      end
    end
  end
end

# frozen_string_literal: true

require "spec_helper"
require "objspace"

# Every C object of the extension survives the garbage collector moving and
# collecting around it: Kaal::Cron and a backend handle of each built backend
# run a few real calls while GC.compact moves every object it can
# (verify_compaction_references checks each reference was updated) and
# under GC.stress (a collection at every allocation).
RSpec.describe "The extension's objects under GC.compact and GC.stress" do
  def compact!
    if GC.respond_to?(:verify_compaction_references)
      GC.verify_compaction_references(double_heap: true, toward: :empty)
    elsif GC.respond_to?(:compact)
      GC.compact
    end
  end

  def under_stress
    GC.stress = true
    yield
  ensure
    GC.stress = false
  end

  def exercise_cron(cron)
    from = Time.utc(2026, 3, 8, 6, 59, 30)
    expect(cron.next_time(from)).to eq(Time.utc(2026, 3, 8, 7, 0, 0))
    expect(cron.next_times(from, count: 3).size).to eq(3)
    expect(cron.previous_time(from)).to eq(Time.utc(2026, 3, 8, 6, 45, 0))
    expect(cron.next_epoch(from.to_i)).to eq(Time.utc(2026, 3, 8, 7).to_i)
    expect(cron.expression).to eq("*/15 * * * * America/New_York")
    expect(cron.time_zone).to eq("America/New_York")
    expect(cron).to eq(Kaal::Cron.parse("0,15,30,45 * * * *", time_zone: "America/New_York"))
    expect(cron.hash).to eq(Kaal::Cron.parse("0,15,30,45 * * * *", time_zone: "America/New_York").hash)
    expect { Kaal::Cron.parse("café * * * *") }.to raise_error(Kaal::CronSyntaxError, /café/)
  end

  it "Kaal::Cron keeps its expression and zone" do
    crons = Array.new(3) { Kaal::Cron.parse(+"*/15 * * * * America/New_York") }
    2.times do
      compact!
      crons.each { |cron| exercise_cron(cron) }
    end
    under_stress { exercise_cron(crons.first) }
  end

  it "the scheduler file's entries read in C (alike, and alike but for their args) keep their keys and args" do
    Dir.mktmpdir do |dir|
      path = File.join(dir, "kaal-scheduler.yml")
      entries = Array.new(20) { |i| "  - key: job-#{i}\n    cron: 0 0 1 1 *\n    job_class: X\n" }
      entries += Array.new(20) { |i| "  - key: arg-#{i}\n    cron: 0 0 1 1 *\n    job_class: X\n    args: [#{i}, s#{i}]\n" }
      File.write(path, "defaults:\n  jobs:\n#{entries.join}")
      read = -> { Kaal::SchedulerFile.table(path, "production", default_time_zone: "UTC") }
      table = under_stress { read.call }
      compact!
      [table, read.call].each do |jobs|
        expect(jobs.keys).to eq(Array.new(20) { |i| "job-#{i}" } + Array.new(20) { |i| "arg-#{i}" })
        expect(jobs.values.last(20).map(&:args)).to eq(Array.new(20) { |i| [i, "s#{i}"] })
        expect(jobs["arg-10"].location).to eq("#{path}: defaults.jobs[30] (job \"arg-10\")")
        expect(jobs["job-10"].instance_variables).to eq(%i[@key @spec]) # made in C
      end
    end
  end

  it "Kaal.register's jobs per customer made in C (defined as a recent job but for their args) keep their values" do
    Kaal.reset!
    Kaal.configure { |c| c.logger = Logger.new(File::NULL) }
    zones = %w[UTC Asia/Tokyo Europe/Paris]
    register = ->(i) { Kaal.register(key: "c-#{i}", cron: "0 9 * * *", job_class: "X", args: [i, "s#{i}"], time_zone: zones[i % 3]) }
    3.times { |i| register.call(i) } # the definitions, made in Ruby
    jobs = under_stress { Array.new(30) { |i| register.call(i + 3) } }
    compact!
    expect(jobs.map(&:key)).to eq(Array.new(30) { |i| "c-#{i + 3}" })
    expect(jobs.map(&:args)).to eq(Array.new(30) { |i| [i + 3, "s#{i + 3}"] })
    expect(jobs.map { |j| j.cron.time_zone }).to eq(Array.new(30) { |i| zones[(i + 3) % 3] })
    expect(jobs.map { |j| j.spec.class }.uniq).to eq([Kaal::Job::ArgsSpec])
    expect(jobs.map { |j| j.spec.base }.uniq.size).to eq(3)
  ensure
    Kaal.reset!
  end

  %i[memory sqlite redis postgres mysql].each do |kind|
    describe "a #{kind} backend handle" do
      kaal_backend_for kind

      # A round of real calls with fresh keys. Returns what they answered,
      # checked by expect_round outside GC.stress (matchers there are slow).
      def exercise_backend(backend, round)
        now = 1_700_000_000 + (round * 60)
        key = "job-#{round}-é"
        seen = {}
        seen[:claim] = backend.claim([[key, now], ["other-#{round}", now]], lease_ms: 60_000,
                                                                        node: "node-é", now: now)
        backend.record(key, now, "dispatched", node: "node-é", now: now)
        seen[:status] = backend.dispatch_status(key, now)
        seen[:log] = backend.dispatches(key: key).map { |row| [row[:key], row[:node]] }
        backend.set_enabled(key, false)
        seen[:enabled] = backend.states[key]
        backend.delayed_add(job_id: "delayed-#{round}", run_at_ms: now * 1000, job_class: "SomeJob",
                            args_json: "[1]")
        seen[:listed] = backend.delayed_list.map { |row| row[:job_id] }
        seen[:taken] = backend.delayed_claim(now_ms: (now + 1) * 1000, limit: 10).map { |row| row[:job_id] }
        backend.heartbeat("node-#{round}", "{}", now: now, ttl: 60)
        seen[:nodes] = backend.nodes(since: now - 1).map { |row| row[:node] }
        seen[:kind] = backend.kind
        seen[:inspect] = backend.inspect
        seen
      end

      def expect_round(seen, round)
        key = "job-#{round}-é"
        expect(seen[:claim]).to eq([true, true])
        expect(seen[:status]).to eq("dispatched")
        expect(seen[:log]).to eq([[key, "node-é"]])
        expect(seen[:enabled]).to be(false)
        expect(seen[:listed]).to include("delayed-#{round}")
        expect(seen[:taken]).to eq(["delayed-#{round}"])
        expect(seen[:nodes]).to include("node-#{round}")
        expect(seen[:kind]).to eq(kaal_backend_kind)
        expect(seen[:inspect]).to include(kaal_backend_kind.to_s)
      end

      it "keeps working while objects move and are collected" do
        backend = backend_factory.call(unique_namespace("gc"))
        compact!
        2.times { |round| expect_round(exercise_backend(backend, round), round) }
        seen = under_stress { exercise_backend(backend, 10) }
        expect_round(seen, 10)
        compact!
        expect_round(exercise_backend(backend, 20), 20)
        expect(ObjectSpace.memsize_of(backend)).to be > 0
      end
    end
  end
end

# frozen_string_literal: true

require "fileutils"
require "json"
require "open3"
require "tmpdir"
require_relative "../../test/chaos/harness"

# Short forms of bin/chaos (docs/guarantee.md), one per shared backend: three
# real `kaal start` nodes, 20 jobs firing every second, nodes SIGKILLed and
# restarted at random, two of them with clocks 2 s off either way, and the
# backend's own server crashed and started again on the same port (SQLite:
# the file locked by another process past the busy timeout). No (job key,
# fire time) may run twice. Coverage is only checked loosely: a pair lost to
# a node killed between claim and dispatch is allowed (at most once).
#
# "sidekiq" is the exactly-once hand-off under the same schedule (--backend
# redis --target sidekiq): the jobs are claimed and enqueued in one step and
# run by two real Sidekiq processes; no pair may be claimed without its job,
# and a job handed off and never run must be one a worker's fetch lost in the
# server crash (Sidekiq's own delivery, not the hand-off).
#
# "solid_queue" is the transactional hand-off (--backend postgres --target
# solid_queue): each node loads a one-file Rails app and claims and enqueues
# in one transaction, one real solid_queue supervisor (one worker process)
# runs the jobs, under the same assertions as "sidekiq". Its nodes load Rails,
# seconds on a busy machine, so it is smaller (2 nodes, 10 jobs), counts its
# run from when both nodes' schedulers have started (--from-ready), and kills
# only a running node, never the last one.
#
# "redis-tls" is the redis run over TLS (--tls): the private server speaks
# only TLS, with certificates made by the openssl command in the run dir.
#
# Each run starts its own private server (bin/services in the run dir), so it
# can crash it. The seven runs go two at a time (the slow solid_queue one first) in the background as soon as
# the first example needs one (KAAL_CHAOS_SECONDS: length of each run,
# default 28; KAAL_CHAOS_PARALLEL: runs at once, default 2).
module KaalChaosShort
  BIN = File.expand_path("../../bin/chaos", __dir__)
  BACKENDS = %w[redis postgres mysql sqlite].freeze
  RUNS = (BACKENDS + %w[sidekiq solid_queue redis-tls]).freeze
  QUEUE_TARGETS = %w[sidekiq solid_queue].freeze
  LOCK = Mutex.new
  DONE = ConditionVariable.new
  @results = {}
  @started = false

  module_function

  def seconds
    Float(ENV.fetch("KAAL_CHAOS_SECONDS", "28"))
  end

  def unavailable(backend)
    if backend == "redis-tls"
      return "this build has no TLS for Redis (libssl-dev)" unless Kaal::Native::REDIS_TLS
      return "the openssl command is not installed" unless Kaal::Chaos::TlsFiles.available?

      backend = "redis"
    end
    if backend == "sidekiq"
      return "no redis server installed (bin/setup)" unless Kaal::Chaos::Server.available?("redis")
      return "the redis backend is not compiled into this build" unless Kaal::Native.backends.include?("redis")

      return nil
    end
    if backend == "solid_queue"
      begin
        Gem::Specification.find_by_name("solid_queue")
      rescue Gem::MissingSpecError
        return "the solid_queue gem is not installed (bin/setup)"
      end
      backend = "postgres"
    end
    return "the #{backend} backend is not compiled into this build" unless Kaal::Native.backends.include?(backend)
    return nil if backend == "sqlite"
    return "no #{backend} server installed (bin/setup)" unless Kaal::Chaos::Server.available?(backend)

    nil
  end

  # [status, report Hash or nil, stderr, dir]
  def run(backend)
    dir = Dir.mktmpdir("kaal-chaos-spec-#{backend}-")
    target = { "sidekiq" => %w[--backend redis --target sidekiq --nodes 3 --jobs 20],
               "solid_queue" => %w[--backend postgres --target solid_queue --nodes 2 --jobs 10 --workers 1 --from-ready],
               "redis-tls" => %w[--backend redis --tls --nodes 3 --jobs 20] }
             .fetch(backend, ["--backend", backend, "--nodes", "3", "--jobs", "20"])
    out, err, status = Open3.capture3(BIN, *target, "--duration", seconds.to_s, "--skew", "2.0", "--spare-node0",
                                      "--dir", dir, "--json")
    report = begin
      JSON.parse(out, symbolize_names: true)
    rescue JSON::ParserError
      nil
    end
    [status, report, err, dir]
  end

  def start_all
    LOCK.synchronize do
      return if @started

      @started = true
    end
    # only the runs whose examples are selected (rspec -e, --example ...)
    selected = RSpec.world.filtered_examples.values.flatten.filter_map { |e| e.metadata[:chaos_run] }
    queue = Queue.new
    RUNS.sort_by { |b| b == "solid_queue" ? 0 : 1 }.each { |b| queue << b if selected.include?(b) && !unavailable(b) }
    queue.close
    Integer(ENV.fetch("KAAL_CHAOS_PARALLEL", "2")).times do
      Thread.new do
        while (backend = queue.pop)
          result = begin
            run(backend)
          rescue StandardError => e
            [nil, nil, "#{e.class}: #{e.message}", nil]
          end
          LOCK.synchronize do
            @results[backend] = result
            DONE.broadcast
          end
        end
      end
    end
  end

  def result(backend)
    start_all
    LOCK.synchronize do
      DONE.wait(LOCK, 5) until @results.key?(backend)
      @results[backend]
    end
  end
end

RSpec.describe "bin/chaos short runs", :integration do
  KaalChaosShort::RUNS.each do |backend|
    label = { "sidekiq" => "redis, Sidekiq jobs handed off atomically",
              "solid_queue" => "postgres, solid_queue jobs handed off in the claim's transaction", "redis-tls" => "redis over TLS" }
    nodes = backend == "solid_queue" ? 2 : 3
    it "#{label.fetch(backend, backend)}: no (key, fire time) runs twice across #{nodes} nodes through SIGKILLs, " \
       "a server crash and skewed clocks", chaos_run: backend do
      skip_unavailable(KaalChaosShort.unavailable(backend))

      status, report, err, dir = KaalChaosShort.result(backend)
      explain = -> { "bin/chaos --backend #{backend} exited #{status&.exitstatus.inspect}; run dir #{dir}\n#{err}" }
      expect(report).not_to be_nil, explain
      puts "\n#{Kaal::Chaos::Report.text(report).gsub(/^/, "    ")}"

      expect(report[:duplicates]).to be_empty, explain
      expect(status.exitstatus).to eq(0), explain # no node crashed or hung on TERM
      expect(report[:outages].size).to be >= 1, explain
      expect(report[:outages].all? { |o| o[:up_at] }).to be(true), explain
      expect(report[:kills]).to be >= 1, explain
      expect(report[:dispatches]).to be > 0, explain
      # Every pair that did not run has a cause the harness can name (its
      # node SIGKILLed between claim and dispatch, the server down at its
      # fire time, no node running): how many that is depends on where the
      # random kills land, so a coverage threshold would fail on an unlucky
      # schedule; an unexplained loss fails on any schedule.
      unexplained = report[:lost].select { |l| l[:reason].start_with?("UNEXPLAINED") }
      expect(unexplained).to be_empty, explain
      expect(report[:coverage]).to be >= 50.0, explain # most of the run was served
      if KaalChaosShort::QUEUE_TARGETS.include?(backend)
        # exactly once: every pair handed off was enqueued with its claim;
        # none claimed and left behind, none left in the queue, and the only
        # ones not run are those a worker's fetch lost in the server crash;
        # every run is the queue's real worker's (the records are theirs)
        expect(report[:claimed_never_dispatched]).to be_empty, explain
        expect(report[:handed_off]).to include(left_in_queue: 0), explain
        expect(report[:handed_off][:logged]).to eq(report[:dispatches] - report[:sidekiq_reruns] +
                                                   report[:handed_off][:never_ran]), explain
        expect(report[:runs_by].keys.map(&:to_s)).to all(start_with("#{backend}-")), explain
        reasons = report[:lost].map { |l| l[:reason] }
        expect(reasons.grep(/claimed, node killed|UNEXPLAINED/)).to be_empty, explain
      end
      FileUtils.rm_rf(dir)
    end
  end

  # The control: on the memory backend every node has its own store, so
  # every node runs every job. If bin/chaos could not see that (and fail),
  # the examples above would prove nothing.
  it "reports the duplicates and exits 1 when the nodes do not share a backend (harness control)" do
    Dir.mktmpdir("kaal-chaos-spec-control-") do |dir|
      out, err, status = Open3.capture3(KaalChaosShort::BIN, "--backend", "memory", "--nodes", "2", "--jobs", "3",
                                        "--duration", "10", "--dir", dir, "--json")
      report = JSON.parse(out, symbolize_names: true)

      expect(status.exitstatus).to eq(1), err
      expect(report[:duplicates].size).to be >= 6, err
      expect(report[:duplicates].first[:runs].map { |r| r[:node] }.uniq.size).to be >= 2
    end
  end
end

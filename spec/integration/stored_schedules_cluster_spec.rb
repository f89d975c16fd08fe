# frozen_string_literal: true

require "json"
require "time"
require "tmpdir"

# Three real `kaal start` nodes on one shared backend; a schedule stored
# through a fourth process (`kaal schedules add`) fires on the cluster, each
# fire time exactly once, and stops after `kaal schedules remove`. No node
# is restarted or reloaded.
#
# What the product guarantees is about ticks, not wall-clock seconds: every
# node applies a change in its first tick that starts after the change was
# stored (the poll at the top of the tick), and that tick already claims the
# new schedule's runs up to its own time; from the tick that applied a
# removal on, a node claims no run of it. How late a tick starts on a loaded
# machine is not the product's to promise, so the spec reads each node's own
# tick times and `schedules` events from its JSON log (debug level logs the
# `tick` event) instead of timing the nodes from the test process.
RSpec.describe "stored schedules on a cluster of three `kaal start` nodes", :integration do
  JOB_RB = <<~RUBY
    class StoredFireJob
      def self.perform(name, fire)
        File.open(ENV.fetch("FIRE_LOG"), "a") { |f| f.write("\#{name} \#{fire} \#{Process.pid}\\n") }
      end
    end
  RUBY

  TICK = 2

  # [[name, fire time, pid], ...] from the fire log.
  def fires
    return [] unless File.exist?(@log)

    File.readlines(@log, chomp: true).map(&:split).select { |r| r.size == 3 }.map { |n, f, p| [n, Integer(f), Integer(p)] }
  end

  # A node's log as a list of [event name, fields] (JSON lines only).
  def events(node)
    node.log.lines.filter_map do |line|
      next unless line.end_with?("\n") # the last line may be half written

      h = JSON.parse(line)
      [h["event"], h["fields"] || {}] if h.is_a?(Hash)
    rescue JSON::ParserError
      nil
    end
  end

  # The tick times (Integer Unix seconds) of a node, with ok:, in log order.
  def ticks(node)
    events(node).select { |e, _| e == "tick" }.map { |_, f| [Time.iso8601(f["at"]).to_i, f["ok"]] }
  end

  # The time of the tick in which the node's +nth+ (0-based) `schedules`
  # event that applied something was emitted: the tick event following it
  # in the node's own log (the poll runs first in a tick). nil until then.
  def apply_tick(node, nth)
    seen = -1
    events(node).each do |e, f|
      seen += 1 if e == "schedules" && f["applied"].to_i.positive?
      return Time.iso8601(f["at"]).to_i if e == "tick" && seen == nth
    end
    nil
  end

  # The first successful tick of the node that started after +t+ (a tick
  # at second t + 1 or later began once second t was over).
  def first_tick_after(node, t)
    ticks(node).find { |at, ok| ok && at > t }&.first
  end

  %w[redis postgres].each do |kind|
    it "on #{kind}: added through one process, every node applies it in its next tick; fires once per second; removal the same" do
      reason = KaalBackendSpec.unavailable_reason(kind)
      raise reason if reason && KaalBackendSpec.require_services?
      skip reason if reason

      Dir.mktmpdir("kaal-cluster") do |dir|
        @log = File.join(dir, "fires.log")
        ns = KaalBackendSpec.unique_namespace("cluster")
        nodes = Array.new(3) do
          Kaal::Spec::KaalProcess.new(backend: kind, backend_config: { "url" => KaalBackendSpec.service_url(kind) },
                                      settings: { "namespace" => ns, "tick_interval" => TICK, "log_format" => "json",
                                                  "log_level" => "debug" },
                                      jobs_rb: JOB_RB)
        end
        logs = -> { nodes.map(&:log).join }
        begin
          # kaal's tables may not exist yet on a fresh test server (a node
          # refuses to start without them; this spec must not rely on an
          # earlier one having created them).
          out, err, code = nodes[0].command("migrate")
          expect(code).to eq(0), "#{out}#{err}"
          nodes.each { |n| n.start(env: { "FIRE_LOG" => @log }) }
          nodes.each do |n|
            wait_until(-> { "a node to start:\n#{n.log}" }, timeout: 30) { n.log.include?("scheduler started") }
          end
          add = lambda do |name|
            out, err, code = nodes[0].command("schedules", "add", name, "--cron", "* * * * * *", "--class", "StoredFireJob",
                                              "--args", JSON.generate([name, "{{fire_time.unix}}"]))
            expect([err, code]).to eq(["", 0]), "#{out}#{err}"
          end

          add.call("every-second")
          added_at = Time.now.to_i # stored by now (the command has returned)
          applied = nodes.map do |n|
            wait_until(-> { "each node to apply the add and tick after it:\n#{logs.call}" }, timeout: 60) do
              (at = apply_tick(n, 0)) && first_tick_after(n, added_at) && at
            end
          end
          nodes.zip(applied).each do |n, at|
            expect(at).to be <= first_tick_after(n, added_at) # in the first tick after the add, not later
          end
          wait_until(-> { "4 seconds of fires in #{@log}:\n#{logs.call}" }, timeout: 60) do
            fires.map { |_, f, _| f }.uniq.size >= 4
          end
          seconds = fires.select { |n, _, _| n == "every-second" }.map { |_, f, _| f }
          expect(seconds.min).to be <= applied.min # the applying tick claimed up to its own second
          expect(seconds.tally.select { |_, c| c > 1 }).to eq({}) # each fire time exactly once on the cluster
          expect(seconds.sort).to eq((seconds.min..seconds.max).to_a) # and none skipped

          out, _, code = nodes[1].command("schedules", "remove", "every-second")
          expect([out, code]).to eq(["removed: every-second\n", 0])
          removed_at = Time.now.to_i
          removal = nodes.map do |n|
            wait_until(-> { "each node to apply the removal and tick after it:\n#{logs.call}" }, timeout: 60) do
              (at = apply_tick(n, 1)) && first_tick_after(n, removed_at) && at
            end
          end
          nodes.zip(removal).each do |n, at|
            expect(at).to be <= first_tick_after(n, removed_at) # in the first tick after the removal
          end
          removed_by = nodes.zip(removal).to_h { |n, at| [n.pid, at] }
          # Stopping waits for running jobs: the fire log is complete after it.
          expect(nodes.map(&:stop)).to eq([0, 0, 0])
          late = fires.select { |n, f, pid| n == "every-second" && f >= removed_by.fetch(pid) }
          expect(late).to eq([]) # no node ran a second at or after the tick that applied the removal there
          seconds = fires.select { |n, _, _| n == "every-second" }.map { |_, f, _| f }
          expect(seconds.tally.select { |_, c| c > 1 }).to eq({})
          expect(seconds.sort).to eq((seconds.min..seconds.max).to_a)
        ensure
          nodes.each(&:cleanup)
        end
      end
    end
  end
end

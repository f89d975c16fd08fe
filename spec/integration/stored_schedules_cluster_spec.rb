# frozen_string_literal: true

require "json"
require "tmpdir"

# Three real `kaal start` nodes on one shared backend; a schedule stored
# through a fourth process (`kaal schedules add`) fires on the cluster
# within two ticks, each fire time exactly once, and stops within two
# ticks of `kaal schedules remove`. No node is restarted or reloaded.
# (tick_interval 2: a job every second still runs on its second, the loop
# waking for it; "two ticks" is then 4 s, room for a loaded machine.)
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

  %w[redis postgres].each do |kind|
    it "on #{kind}: added through one process, fires once per second on the cluster within two ticks" do
      reason = KaalBackendSpec.unavailable_reason(kind)
      raise reason if reason && KaalBackendSpec.require_services?
      skip reason if reason

      Dir.mktmpdir("kaal-cluster") do |dir|
        @log = File.join(dir, "fires.log")
        ns = KaalBackendSpec.unique_namespace("cluster")
        nodes = Array.new(3) do
          Kaal::Spec::KaalProcess.new(backend: kind, backend_config: { "url" => KaalBackendSpec.service_url(kind) },
                                      settings: { "namespace" => ns, "tick_interval" => TICK }, jobs_rb: JOB_RB)
        end
        begin
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
          wait_until(-> { "4 seconds of fires in #{@log}:\n#{nodes.map(&:log).join}" }, timeout: 30) do
            fires.map { |_, f, _| f }.uniq.size >= 4
          end
          seconds = fires.select { |n, _, _| n == "every-second" }.map { |_, f, _| f }
          expect(seconds.min).to be <= added_at + 2 * TICK # within two ticks of the add
          expect(seconds.tally.select { |_, c| c > 1 }).to eq({}) # each fire time exactly once on the cluster
          expect(seconds.sort).to eq((seconds.min..seconds.max).to_a) # and none skipped

          out, _, code = nodes[1].command("schedules", "remove", "every-second")
          expect([out, code]).to eq(["removed: every-second\n", 0])
          removed_at = Time.now.to_i
          add.call("sentinel") # fires from the next tick on: tells when every node is past the removal
          wait_until(-> { "the sentinel two ticks after the removal:\n#{nodes.map(&:log).join}" }, timeout: 30) do
            fires.any? { |n, f, _| n == "sentinel" && f > removed_at + 2 * TICK }
          end
          late = fires.select { |n, f, _| n == "every-second" && f > removed_at + 2 * TICK }
          expect(late).to eq([])
          sentinel = fires.select { |n, _, _| n == "sentinel" }.map { |_, f, _| f }
          expect(sentinel.tally.select { |_, c| c > 1 }).to eq({})
          expect(nodes.map(&:stop)).to eq([0, 0, 0])
        ensure
          nodes.each(&:cleanup)
        end
      end
    end
  end
end

# frozen_string_literal: true

require "spec_helper"
require "objspace"
require "open3"
require "rbconfig"

# What the C objects report and how long their loops hold the interpreter:
# the memory backend's memsize counts its store, and Kaal::Cron#next_times
# neither reserves memory for whatever count it is given nor ignores
# Thread#raise / Thread#kill while it runs.
RSpec.describe "Resources of the extension's objects" do
  describe "memsize of a memory backend handle" do
    it "includes the store, growing with what it holds" do
      backend = Kaal::Backend.build("memory", namespace: "memsize-#{Process.pid}")
      backend.migrate
      empty = ObjectSpace.memsize_of(backend)
      now = 1_700_000_000
      pairs = Array.new(2000) { |i| ["job-#{i}-#{"x" * 40}", now] }
      backend.claim(pairs, lease_ms: 60_000, node: "node", now: now)
      200.times do |i|
        backend.delayed_add(job_id: "delayed-#{i}", run_at_ms: now * 1000, job_class: "SomeJob",
                            args_json: "[#{"1," * 50}1]")
      end
      full = ObjectSpace.memsize_of(backend)
      # 2000 log rows with 45-byte keys and 200 jobs with ~100-byte arguments:
      # well over 100 kB however the entries are laid out.
      expect(full - empty).to be > 100_000
    ensure
      backend&.close
    end
  end

  describe "Kaal::Cron#next_times" do
    # Runs code in a child Ruby (a loop that never checks for interrupts
    # would hold the interpreter: the child is killed at the deadline).
    def run_child(code, deadline: 20)
      lib = File.expand_path("../../../lib", __dir__)
      Open3.popen2e(RbConfig.ruby, "-I#{lib}", "-rkaal", "-e", code) do |stdin, out, wait|
        stdin.close
        unless wait.join(deadline)
          Process.kill(:KILL, wait.pid)
          wait.join
          return "still running after #{deadline} s"
        end
        out.read
      end
    end

    it "grows its Array as it fills instead of reserving count slots" do
      cron = Kaal::Cron.parse("0 0 1 1 *")
      expect(cron.next_times(Time.utc(2026), count: 3).map(&:year)).to eq([2027, 2028, 2029])
      output = run_child(<<~RUBY)
        cron = Kaal::Cron.parse("* * * * * *")
        started = Queue.new
        worker = Thread.new do
          started << true
          cron.next_times(Time.utc(2026), count: 2**40)
        rescue Exception => e
          e
        end
        started.pop
        sleep 0.2 # let the loop run (what follows does not depend on it)
        t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        worker.raise(Interrupt, "stop")
        result = worker.value
        elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
        puts "\#{result.class}: \#{result.message} in \#{elapsed.round(3)}"
      RUBY
      expect(output).to match(/\AInterrupt: stop in \d/), output
      expect(output[/in ([\d.]+)/, 1].to_f).to be < 2
    end

    it "stops at Thread#kill in the middle of a long run" do
      output = run_child(<<~RUBY)
        cron = Kaal::Cron.parse("* * * * * *")
        worker = Thread.new { cron.next_times(Time.utc(2026), count: 200_000_000) }
        Thread.pass until worker.status == "run" || !worker.alive?
        sleep 0.2
        t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        worker.kill
        worker.join
        puts "killed in \#{(Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0).round(3)}"
      RUBY
      expect(output).to match(/\Akilled in \d/), output
      expect(output[/in ([\d.]+)/, 1].to_f).to be < 2
    end
  end

  describe "Times returned by Kaal::Cron" do
    it "carry the zone's offset at that instant, from the Integer itself" do
      cron = Kaal::Cron.parse("30 2 * * * Europe/Paris")
      summer = cron.next_time(Time.utc(2026, 7, 1))
      expect([summer.utc_offset, summer.utc.hour, summer.min]).to eq([7200, 0, 30])
      winter = cron.next_time(Time.utc(2026, 1, 1))
      expect([winter.utc_offset, winter.utc.hour]).to eq([3600, 1])
      far = cron.next_time(Time.utc(2200, 1, 1))
      expect([far.year, far.utc_offset]).to eq([2200, 3600])
      expect(far.to_i).to eq(Time.utc(2200, 1, 1, 1, 30).to_i)
    end
  end
end

# frozen_string_literal: true

require "rbconfig"

# What the benchmarks share: clocks, the verdict next to a target, and a
# real `kaal start` timed from spawn to the end of its first tick.
module BenchSupport
  module_function

  def clock
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  # This process's CPU time.
  def cpu
    Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
  end

  def verdict(ok)
    ok ? "ok" : "MISSED"
  end

  # CPU seconds (user + system) the process +pid+ has used (Linux /proc).
  def proc_cpu(pid)
    fields = File.read("/proc/#{pid}/stat").split(") ", 2).last.split(" ")
    (fields[11].to_i + fields[12].to_i) / 100.0
  end

  # Ruby for a --require file of `kaal start`: BenchMarkerJob (give it a job
  # firing every second: its first run writes +ran+) and a tick subscriber
  # that writes the monotonic time the first tick ended to +marker+.
  def marker_code(marker, ran)
    <<~RUBY
      class BenchMarkerJob
        def self.perform
          File.write(#{ran.inspect}, "ran") unless File.exist?(#{ran.inspect})
        end
      end
      Kaal.subscribe(:tick) do
        File.write(#{marker.inspect}, Process.clock_gettime(Process::CLOCK_MONOTONIC).to_s) unless File.exist?(#{marker.inspect})
      end
    RUBY
  end

  # Spawns `kaal start --require required` in +app+ (its config/ written by
  # the caller; required loads marker_code(marker, ran)), waits for the end
  # of its first tick and for the marker job's run, lets it tick +settle+
  # seconds more, then TERMs it. -> {first_tick_s: from spawn, cpu_s: its
  # CPU until then, vmhwm_mb: its peak RSS, exit: its exit status}.
  def kaal_start(app, required, marker, ran, settle: 3)
    spawned = clock
    pid = Process.spawn(RbConfig.ruby, "-I", File.expand_path("../lib", __dir__),
                        File.expand_path("../bin/kaal", __dir__), "start", "--require", required,
                        chdir: app, out: File::NULL, err: File::NULL)
    result = begin
      deadline = clock + 300
      sleep 0.01 until (File.exist?(marker) && !File.read(marker).empty?) || clock > deadline
      raise "kaal start: no first tick within 300 s" unless File.exist?(marker)

      first_tick = File.read(marker).to_f - spawned
      cpu_s = proc_cpu(pid)
      sleep 0.01 until File.exist?(ran) || clock > deadline
      raise "kaal start: the marker job did not run" unless File.exist?(ran)

      sleep settle
      hwm = File.read("/proc/#{pid}/status")[/^VmHWM:\s+(\d+) kB/, 1].to_i / 1024.0
      { first_tick_s: first_tick, cpu_s: cpu_s, vmhwm_mb: hwm }
    ensure
      Process.kill("TERM", pid)
      Process.wait(pid)
    end
    result.merge(exit: $?.exitstatus)
  end
end

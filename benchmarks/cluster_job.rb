# frozen_string_literal: true

# Loaded by every node of benchmarks/cluster.rb (`kaal start --require ...`).
#
# KaalClusterJob.perform(key, fire_time) does nothing but note
# "<key> <fire_time> <node> <ran_at>" in memory; a thread writes the notes to
# <KAAL_CLUSTER_RECORD_DIR>/<node>.rec every half second, and once more when
# the node exits (TERM). ran_at is the wall clock when the job ran, so
# ran_at - fire_time is how late the run was.
module KaalClusterJob
  DIR = ENV.fetch("KAAL_CLUSTER_RECORD_DIR")
  NODE = ENV.fetch("KAAL_NODE_ID")
  @lock = Mutex.new
  @lines = []

  class << self
    def perform(key, fire_time)
      line = "#{key} #{fire_time} #{NODE} #{format("%.3f", Process.clock_gettime(Process::CLOCK_REALTIME))}\n"
      @lock.synchronize { @lines << line }
    end

    def flush
      lines = @lock.synchronize do
        taken = @lines
        @lines = []
        taken
      end
      File.open(File.join(DIR, "#{NODE}.rec"), "a") { |f| f.write(lines.join) } unless lines.empty?
    end
  end

  if ENV["KAAL_CLUSTER_PROFILE"]
    require "stackprof"
    StackProf.start(mode: :cpu, raw: true, interval: 1000)
    at_exit do
      StackProf.stop
      StackProf.results(File.join(DIR, "#{NODE}.stackprof"))
    end
  end

  Thread.new do
    loop do
      sleep 0.5
      flush
    end
  end
  at_exit { flush }
end

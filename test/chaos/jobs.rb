# frozen_string_literal: true

# Loaded by every chaos node (`kaal start --require test/chaos/jobs.rb`).
#
# KaalChaosJob.perform(key, fire_time) appends one line
#
#   "<key> <fire_time_unix> <node> <pid> <written_at>\n"
#
# to the job's own record, <KAAL_CHAOS_RECORD_DIR>/<key>.rec, with a single
# write(2) on a descriptor opened with O_APPEND: lines are far below
# PIPE_BUF, so lines from different processes never interleave or overwrite
# each other, and a SIGKILL leaves either the whole line or nothing.
# written_at is the real wall clock (not the node's skewed Kaal::Clock), so
# written_at - fire_time is how late the run really was.
class KaalChaosJob
  DIR = ENV.fetch("KAAL_CHAOS_RECORD_DIR")
  NODE = ENV.fetch("KAAL_CHAOS_NODE")

  def self.perform(key, fire_time)
    line = format("%<k>s %<f>d %<n>s %<p>d %<at>.3f\n", k: key, f: Integer(fire_time), n: NODE, p: Process.pid,
                                                          at: Process.clock_gettime(Process::CLOCK_REALTIME))
    fd = IO.sysopen(File.join(DIR, "#{key}.rec"), File::WRONLY | File::APPEND | File::CREAT, 0o644)
    io = IO.new(fd, "w")
    begin
      io.syswrite(line)
    ensure
      io.close
    end
  end
end

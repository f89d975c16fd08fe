# frozen_string_literal: true

# The record every chaos job class writes (test/chaos/jobs.rb,
# sidekiq_jobs.rb, solid_queue_app.rb): KaalChaosRecord.append(key,
# fire_time, extra) appends one line
#
#   "<key> <fire_time_unix> <node> <pid> <written_at>[ <extra>]\n"
#
# to the job's own record, <KAAL_CHAOS_RECORD_DIR>/<key>.rec, with a single
# write(2) on a descriptor opened with O_APPEND: lines are far below
# PIPE_BUF, so lines from different processes never interleave or overwrite
# each other, and a SIGKILL leaves either the whole line or nothing.
# <node> is KAAL_CHAOS_NODE (a kaal node, or the worker running the job).
# written_at is the real wall clock (not the node's skewed Kaal::Clock), so
# written_at - fire_time is how late the run really was.
module KaalChaosRecord
  DIR = ENV.fetch("KAAL_CHAOS_RECORD_DIR")
  NODE = ENV.fetch("KAAL_CHAOS_NODE")

  def self.append(key, fire_time, extra = nil)
    line = format("%<k>s %<f>d %<n>s %<p>d %<at>.3f", k: key, f: Integer(fire_time), n: NODE, p: Process.pid,
                                                      at: Process.clock_gettime(Process::CLOCK_REALTIME))
    line = "#{line} #{extra}" unless extra.nil?
    fd = IO.sysopen(File.join(DIR, "#{key}.rec"), File::WRONLY | File::APPEND | File::CREAT, 0o644)
    io = IO.new(fd, "w")
    begin
      io.syswrite("#{line}\n")
    ensure
      io.close
    end
  end
end

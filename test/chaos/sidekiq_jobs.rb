# frozen_string_literal: true

# bin/chaos --target sidekiq: loaded by every kaal node (`kaal start
# --require`) and by the real Sidekiq workers (`sidekiq -r`). Both reach
# Redis through REDIS_URL, the Redis of kaal's backend, so kaal hands each
# run off atomically (handoff: atomic in the scheduler file).
#
# KaalChaosSidekiqJob#perform(key, fire_time) runs in a Sidekiq worker and
# appends one line
#
#   "<key> <fire_time_unix> <worker> <pid> <written_at> <jid>\n"
#
# to <KAAL_CHAOS_RECORD_DIR>/<key>.rec with a single write(2) on an O_APPEND
# descriptor, like test/chaos/jobs.rb. The jid tells a second enqueue of the
# same pair (a duplicate kaal made) from Sidekiq running one job twice.
require "sidekiq"

class KaalChaosSidekiqJob
  include Sidekiq::Job
  sidekiq_options queue: "chaos", retry: false

  DIR = ENV.fetch("KAAL_CHAOS_RECORD_DIR")
  WORKER = ENV.fetch("KAAL_CHAOS_NODE")

  def perform(key, fire_time)
    line = format("%<k>s %<f>d %<w>s %<p>d %<at>.3f %<j>s\n", k: key, f: Integer(fire_time), w: WORKER,
                                                               p: Process.pid, at: Process.clock_gettime(Process::CLOCK_REALTIME), j: jid)
    fd = IO.sysopen(File.join(DIR, "#{key}.rec"), File::WRONLY | File::APPEND | File::CREAT, 0o644)
    io = IO.new(fd, "w")
    begin
      io.syswrite(line)
    ensure
      io.close
    end
  end
end

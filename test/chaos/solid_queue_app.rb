# frozen_string_literal: true

# bin/chaos --target solid_queue: a one-file Rails app (Active Record, Active
# Job on solid_queue, no kaal-rails) loaded by every kaal node (`kaal start
# --require`) and by the solid_queue worker (its supervisor). The app's
# database (DATABASE_URL) is the database of kaal's postgres backend, so kaal
# claims each run and enqueues its job in one transaction (handoff: atomic in
# the scheduler file). Its root is the run directory (KAAL_CHAOS_APP_ROOT),
# where config/queue.yml configures the worker.
#
# KaalChaosSolidQueueJob#perform(key, fire_time) runs in the worker and
# appends "<key> <fire_time_unix> <worker> <pid> <written_at> <job id>\n" to
# <KAAL_CHAOS_RECORD_DIR>/<key>.rec with one write(2) on an O_APPEND
# descriptor, like test/chaos/sidekiq_jobs.rb.
require "logger"
require "rails"
require "active_record/railtie"
require "active_job/railtie"
require "solid_queue"

class KaalChaosApp < Rails::Application
  config.root = ENV.fetch("KAAL_CHAOS_APP_ROOT")
  config.eager_load = false
  config.logger = Logger.new(File.join(config.root, "logs", "rails-#{Process.pid}.log"), level: :warn)
  config.active_job.queue_adapter = :solid_queue
  config.secret_key_base = "kaal-chaos" * 8
  config.solid_queue.silence_polling = true
end
KaalChaosApp.initialize!

class KaalChaosSolidQueueJob < ActiveJob::Base
  queue_as "chaos"

  DIR = ENV.fetch("KAAL_CHAOS_RECORD_DIR")
  WORKER = ENV.fetch("KAAL_CHAOS_NODE")

  def perform(key, fire_time)
    line = format("%<k>s %<f>d %<w>s %<p>d %<at>.3f %<j>s\n", k: key, f: Integer(fire_time), w: WORKER,
                                                               p: Process.pid, at: Process.clock_gettime(Process::CLOCK_REALTIME), j: job_id)
    fd = IO.sysopen(File.join(DIR, "#{key}.rec"), File::WRONLY | File::APPEND | File::CREAT, 0o644)
    io = IO.new(fd, "w")
    begin
      io.syswrite(line)
    ensure
      io.close
    end
  end
end

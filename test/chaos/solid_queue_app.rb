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
# its record (test/chaos/record.rb), like test/chaos/sidekiq_jobs.rb.
require "logger"
require "rails"
require "active_record/railtie"
require "active_job/railtie"
require "solid_queue"
require_relative "record"

class KaalChaosApp < Rails::Application
  config.root = ENV.fetch("KAAL_CHAOS_APP_ROOT")
  config.eager_load = false
  config.logger = Logger.new(File.join(config.root, "logs", "rails-#{Process.pid}.log"), level: :warn)
  config.active_job.queue_adapter = :solid_queue
  config.secret_key_base = "kaal-chaos" * 8
  config.solid_queue.silence_polling = true
  # A worker that dies in the server crash (its supervisor exits when the
  # database goes away) leaves the jobs it had claimed; solid_queue fails
  # them once its heartbeat is older than process_alive_threshold (5 min by
  # default, longer than the run). Here within about 25 s of the crash.
  config.solid_queue.process_heartbeat_interval = 2.seconds
  config.solid_queue.process_alive_threshold = 15.seconds
end
KaalChaosApp.initialize!

class KaalChaosSolidQueueJob < ActiveJob::Base
  queue_as "chaos"

  def perform(key, fire_time)
    KaalChaosRecord.append(key, fire_time, job_id)
  end
end

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
# to its record (test/chaos/record.rb), like test/chaos/jobs.rb. The jid
# tells a second enqueue of the same pair (a duplicate kaal made) from
# Sidekiq running one job twice.
require "sidekiq"
require_relative "record"

class KaalChaosSidekiqJob
  include Sidekiq::Job
  sidekiq_options queue: "chaos", retry: false

  def perform(key, fire_time)
    KaalChaosRecord.append(key, fire_time, jid)
  end
end

# Sidekiq's scheduled-job poller tidies its process set once, 5-15 s after
# the worker starts, outside its own error handling: when the chaos run has
# crashed Redis just then, the poller's thread dies and the worker exits 1 on
# TERM at the end of the run (Sidekiq 7.3, Scheduled::Poller#initial_wait).
# The run crashes Redis on purpose and schedules no Sidekiq jobs, so that
# one tidy-up failing is logged here, not fatal; every other failure of a
# worker still is.
module KaalChaosPollerCleanup
  def cleanup
    super
  rescue RedisClient::ConnectionError => e
    Sidekiq.logger.warn("chaos: poller cleanup skipped, Redis unreachable (#{e.message})")
    0
  end
end
Sidekiq.configure_server { Sidekiq::Scheduled::Poller.prepend(KaalChaosPollerCleanup) }

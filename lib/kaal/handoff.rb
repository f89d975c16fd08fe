# frozen_string_literal: true

module Kaal
  # The exactly-once hand-off (docs/guarantee.md, "Exactly-once hand-off").
  #
  # A job whose queue lives in the store that holds kaal's claims can be
  # claimed and enqueued in one atomic step, so a node that dies between the
  # two loses nothing: either the claim and the job are both there, or
  # neither is and the pair is claimed again on the next tick.
  #
  # - Sidekiq on the Redis of the redis backend: one Lua script claims the
  #   pair, pushes the payload Sidekiq's client built, and writes the log row
  #   with status "dispatched" (Kaal::Handoff::Sidekiq).
  # - solid_queue and good_job on the database of an SQL backend: one
  #   database transaction on the queue's Active Record connection inserts
  #   the log row (status "dispatched") and the job (Kaal::Handoff::ActiveRecord).
  #
  # Each job's mode comes from its handoff: field, else the configuration's
  # handoff: auto (atomic where possible, else at most once), atomic (an
  # error when impossible) or at_most_once.
  module Handoff
    MODES = %i[atomic at_most_once].freeze

    class << self
      # The route of +job+'s runs (planned by the dispatcher as +plan+): an
      # object that hands a batch off atomically, or nil (at most once: claim,
      # then dispatch). Raises ConfigurationError when atomic is asked for and
      # the target cannot do it on this backend.
      def resolve(job, plan, config:, backend:)
        wanted = job.handoff || config.handoff
        return nil if wanted == :at_most_once

        route, reason = route_for(plan, backend)
        return route if route
        return nil if wanted == :auto

        asked = job.handoff ? "handoff: atomic" : "handoff: atomic (the configuration's handoff)"
        raise ConfigurationError,
              "#{job.location}: #{asked} is not possible: #{reason}. Set handoff: at_most_once on the job " \
              "(or handoff: auto in the configuration) to dispatch it at most once"
      end

      # [route, nil] when +plan+'s target can be handed off atomically on
      # +backend+, else [nil, the reason].
      def route_for(plan, backend)
        kind, subject = plan
        case kind
        when :sidekiq then Sidekiq.route(subject, backend)
        when :active_job then ActiveRecord.route(subject, backend)
        when :refused then [nil, "the job class cannot be used (#{Dispatcher.describe_error(subject)})"]
        when :callable then [nil, "a block runs in this process; there is no job queue to hand it to"]
        else
          [nil, "#{subject} is a plain Ruby job (.perform runs in this process); only a job queue in the " \
                "backend's store can take a run in the same step as its claim (Sidekiq on the redis backend, " \
                "solid_queue or good_job on the SQL backend's database)"]
        end
      end
    end

    # One handed-off run's outcome, as the scheduler records it.
    Outcome = Struct.new(:index, :error)
  end
end

require_relative "handoff/sidekiq"
require_relative "handoff/active_record"

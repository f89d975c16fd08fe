# frozen_string_literal: true

module Kaal
  # "Run now": one dispatch of a registered job outside its schedule.
  #
  # A manual run is claimed and recorded in the dispatch log like a scheduled
  # one, but under its own log key, "kaal:manual:" + the job key, with the
  # second of the request as its time. Job keys starting with "kaal:manual:"
  # are refused by Kaal.run_now, so a manual run can never take (or be taken
  # for) a scheduled fire time of any job: the scheduled pair (key, t) and the
  # manual pair ("kaal:manual:" + key, t) are different rows. Its idempotency
  # key is Kaal.idempotency_key("kaal:manual:" + key, t): a different hash
  # from every scheduled run of every job. At most one manual run per job per
  # second: a second request in the same second (another click, another node)
  # loses the claim and dispatches nothing. See docs/dashboard.md.
  module ManualRun
    PREFIX = "kaal:manual:"

    Result = Struct.new(:key, :log_key, :run_at, :idempotency_key, :status, :error, keyword_init: true)

    module_function

    def log_key(key)
      "#{PREFIX}#{key}"
    end

    # The job key of a manual log key, or nil for any other key.
    def job_key(log_key)
      log_key.start_with?(PREFIX) ? log_key.delete_prefix(PREFIX) : nil
    end

    def manual?(log_key)
      log_key.is_a?(String) && log_key.start_with?(PREFIX)
    end

    # A stored schedule no scheduler of this process runs (a web process).
    def stored(key)
      row = Kaal.backend.schedule_get(key)
      row && Schedules.job_from(row, default_time_zone: Kaal.configuration.time_zone)
    rescue BackendError
      nil
    end

    # Claims and dispatches one manual run of +key+ now, on the calling
    # thread (plain jobs and callables run inline; ActiveJob and Sidekiq
    # classes are enqueued). Returns a Result whose status is "dispatched",
    # "failed" or "already_run" (the claim for this second was taken).
    def run(key, now: Clock.now)
      key = key.to_s if key.is_a?(Symbol)
      raise ArgumentError, "key: a manual run's key must not start with #{PREFIX.inspect}" if manual?(key)

      job = Kaal.registry[key] || stored(key) or
        raise ConfigurationError, "no job registered with key #{key.inspect}"
      lkey = log_key(key)
      problem = StoredText.problem(lkey)
      raise ConfigurationError, "job #{key.inspect}: cannot run now: its manual log key #{problem}" if problem

      config = Kaal.configuration
      backend = Kaal.backend
      epoch = now.to_i
      node = Kaal.node_id
      result = Result.new(key: key, log_key: lkey, run_at: Time.at(epoch).utc,
                          idempotency_key: Native.idempotency_key(config.namespace, lkey, epoch))
      won = backend.claim([[lkey, epoch]], lease_ms: (config.lease_ttl * 1000).to_i, node: node, now: epoch).first
      unless won
        result.status = "already_run"
        return result
      end

      dispatch = Dispatch.new(key: lkey, fire_epoch: epoch, job: job, namespace: config.namespace, queue: job.queue,
                              node: node)
      dispatcher = Dispatcher.new(pool: nil, allowed_prefixes: config.delayed_job_allowed_class_prefixes,
                                  wrapper: config.job_wrapper, logger: ->(level, msg) { Kaal.logger.public_send(level, msg) })
      dispatcher.call(dispatch, job.callable || job.job_class)
      backend.record(lkey, epoch, dispatch.status, node: node, error: dispatch.error, now: Clock.now.floor)
      emit(dispatch, node)
      result.status = dispatch.status
      result.error = dispatch.error
      result
    end

    # The dispatch event (and dispatch_failed) of a manual run, as the
    # scheduler emits them for scheduled runs: logs, metrics and error
    # handlers see it, under the manual log key, with kind "manual".
    def emit(d, node)
      payload = lambda do
        { kind: "manual", key: d.key, fire_time: d.fire_time, idempotency_key: d.idempotency_key, job_id: nil,
          job_class: d.job_class, queue: d.queue, node: node, status: d.status, duration: d.duration,
          lateness: 0.0, error: d.error, exception: d.exception }
      end
      Kaal.events.emit(:dispatch, &payload)
      Kaal.events.emit(:dispatch_failed, &payload) if d.status == "failed"
    end
  end

  class << self
    # One manual run of a registered job now (see Kaal::ManualRun).
    def run_now(key, now: Clock.now)
      ManualRun.run(key, now: now)
    end
  end
end

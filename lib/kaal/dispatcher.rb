# frozen_string_literal: true

module Kaal
  # One dispatch, recurring (key + fire_time) or delayed (job_id). Returned
  # by Kaal.tick!. status: "pending" (queued on the worker pool),
  # "dispatched" or "failed"; error: "Class: message" when failed; duration
  # in seconds.
  Dispatch = Struct.new(:key, :fire_time, :idempotency_key, :job_id, :job_class, :queue, :status, :error,
                        :duration, :node, keyword_init: true) do
    def recurring?
      job_id.nil?
    end

    def to_h
      h = super
      h[:fire_time] = fire_time&.iso8601
      h.compact
    end
  end

  # Turns a job (class name, class or callable) plus arguments into a run,
  # following one set of rules for recurring and delayed jobs alike:
  #
  # - a String class name is constantized now (only constant paths; with
  #   delayed_job_allowed_class_prefixes set, a name outside them is refused);
  #   a Class/Module is used as given;
  # - ActiveJob-like (responds to perform_later): set(queue:).perform_later(*args, **kwargs);
  # - Sidekiq-like (includes Sidekiq::Job/Worker or responds to perform_async):
  #   set(queue:).perform_async(*args) (kwargs, if any, go last as a Hash
  #   with String keys: Sidekiq arguments are JSON);
  # - anything else: perform(*args, **kwargs) on the class, or on a new
  #   instance when only instances respond; it runs on the worker pool.
  #
  # Enqueues to ActiveJob/Sidekiq happen on the calling (tick) thread; plain
  # jobs and callables run on the pool so a slow one never delays the tick.
  class Dispatcher
    # A job that cannot be run (unknown class, refused name, ...).
    class Refused < StandardError; end

    # "Class: first line of the message" (at most 500 characters).
    def self.describe_error(error)
      text = "#{error.class}: #{error.message.to_s.lines.first&.chomp}"
      text.size > 500 ? "#{text[0, 500]}..." : text
    end

    def initialize(pool:, allowed_prefixes:, logger:)
      @pool = pool
      @allowed_prefixes = allowed_prefixes
      @logger = logger
    end

    # Runs +target+ for +dispatch+. Calls +done+ with the finished dispatch
    # (status set) on whichever thread finished it. Never raises.
    def call(dispatch, target, args, kwargs, call_keywords: nil, &done)
      started = Clock.monotonic
      if target.respond_to?(:call) && !target.is_a?(Module)
        return run_later(dispatch, started, done) { call_callable(target, dispatch, call_keywords) }
      end

      klass = resolve(target)
      if active_job?(klass)
        enqueue_active_job(klass, dispatch.queue, args, kwargs)
      elsif sidekiq?(klass)
        enqueue_sidekiq(klass, dispatch.queue, args, kwargs)
      else
        runner = plain_runner(klass)
        return run_later(dispatch, started, done) { runner.call(args, kwargs) }
      end
      finish(dispatch, started, nil, done)
    rescue StandardError, ScriptError => e
      finish(dispatch, started, e, done)
    end

    # The class for +name+ (String or Module). Raises Refused.
    def resolve(name)
      return name if name.is_a?(Module)

      name = name.to_s
      raise Refused, "#{name.inspect} is not a constant name" unless Job::CONSTANT_PATH.match?(name)

      check_prefix!(name)
      Object.const_get(name.delete_prefix("::"))
    rescue NameError => e
      raise Refused, "unknown job class #{name} (#{e.message.lines.first.chomp}); is the file that defines it loaded (--require)?"
    end

    # Raises Refused unless +name+ starts with an allowed prefix (when the
    # list is set).
    def check_prefix!(name)
      prefixes = @allowed_prefixes
      return if prefixes.nil? || prefixes.empty?

      plain = name.delete_prefix("::")
      return if prefixes.any? { |p| plain.start_with?(p.delete_prefix("::")) }

      raise Refused, "job class #{plain} is outside delayed_job_allowed_class_prefixes (#{prefixes.join(", ")})"
    end

    private

    def active_job?(klass)
      klass.respond_to?(:perform_later)
    end

    def sidekiq?(klass)
      return true if klass.respond_to?(:perform_async)
      return false unless defined?(::Sidekiq)

      [(::Sidekiq::Job if defined?(::Sidekiq::Job)), (::Sidekiq::Worker if defined?(::Sidekiq::Worker))]
        .compact.any? { |m| klass.include?(m) }
    end

    def enqueue_active_job(klass, queue, args, kwargs)
      target = queue && klass.respond_to?(:set) ? klass.set(queue: queue) : klass
      target.perform_later(*args, **kwargs)
    end

    def enqueue_sidekiq(klass, queue, args, kwargs)
      target = queue && klass.respond_to?(:set) ? klass.set(queue: queue) : klass
      args += [kwargs.transform_keys(&:to_s)] unless kwargs.empty?
      target.perform_async(*args)
    end

    def plain_runner(klass)
      if klass.respond_to?(:perform)
        ->(args, kwargs) { klass.perform(*args, **kwargs) }
      elsif klass.is_a?(Class) && klass.public_method_defined?(:perform)
        ->(args, kwargs) { klass.new.perform(*args, **kwargs) }
      else
        raise Refused, "#{klass} does not respond to perform, perform_later or perform_async " \
                       "(and its instances do not respond to perform)"
      end
    end

    def call_callable(callable, dispatch, keywords)
      all = { fire_time: dispatch.fire_time, idempotency_key: dispatch.idempotency_key, key: dispatch.key }
      case keywords
      when :all then callable.call(**all)
      when nil, [] then callable.call
      else callable.call(**all.slice(*keywords))
      end
    end

    def run_later(dispatch, started, done, &work)
      dispatch.status = "pending"
      runner = lambda do
        error = nil
        started = Clock.monotonic
        begin
          work.call
        rescue StandardError, ScriptError => e
          error = e
        end
        finish(dispatch, started, error, done)
      end
      if @pool&.post { runner.call }
        dispatch
      else
        runner.call
        dispatch
      end
    end

    def finish(dispatch, started, error, done)
      dispatch.duration = Clock.monotonic - started
      if error
        dispatch.status = "failed"
        dispatch.error = Dispatcher.describe_error(error)
      else
        dispatch.status = "dispatched"
      end
      begin
        done&.call(dispatch)
      rescue StandardError => e
        @logger.call(:error, "after dispatch of #{dispatch.key || dispatch.job_id}: #{e.class}: #{e.message}")
      end
      dispatch
    end
  end
end

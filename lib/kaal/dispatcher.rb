# frozen_string_literal: true

module Kaal
  # One dispatch, recurring (key + fire_time) or delayed (job_id). Returned
  # by Kaal.tick!. status: "pending" (queued on the worker pool),
  # "dispatched" or "failed"; error: "Class: message" when failed; duration:
  # seconds. fire_time, idempotency_key and the arguments are computed on
  # first use (on the worker thread for plain jobs, off the tick).
  class Dispatch
    attr_reader :key, :fire_epoch, :job_id, :queue, :node
    attr_accessor :status, :error, :duration
    attr_accessor :exception # the error a failed run raised (for error handlers)

    # A recurring run (the tick's hot path: positional, nothing computed yet;
    # the instance variables it does not set read as nil).
    def self.recurring(job, fire_epoch, namespace, node)
      d = allocate
      d.__send__(:setup_recurring, job, fire_epoch, namespace, node)
      d
    end

    def initialize(key: nil, fire_epoch: nil, job: nil, namespace: nil, job_id: nil, job_class: nil, queue: nil,
                   node: nil, fire_time: nil, arguments: nil)
      setup(key, fire_epoch, job, namespace, job_id, job_class, queue, node, fire_time, arguments)
    end

    def job_class
      @job_class ||= @job&.job_class_name
    end

    private def setup(key, fire_epoch, job, namespace, job_id, job_class, queue, node, fire_time, arguments)
      @key = key
      @fire_epoch = fire_epoch
      @job = job
      @namespace = namespace
      @job_id = job_id
      @job_class = job_class
      @queue = queue
      @node = node
      @fire_time = fire_time
      @arguments = arguments
      @idempotency_key = nil
      @status = nil
      @error = nil
      @duration = nil
      @exception = nil
      @runner = nil
    end

    private def setup_recurring(job, fire_epoch, namespace, node)
      @key = job.key
      @fire_epoch = fire_epoch
      @job = job
      @namespace = namespace
      @queue = job.queue
      @node = node
    end

    def recurring?
      job_id.nil?
    end

    # The fire time (Time with the job zone's offset); for a delayed job, its run_at.
    def fire_time
      @fire_time ||= @job&.fire_time(@fire_epoch)
    end

    # The options given to the job class's set(...) when it is enqueued:
    # queue, priority and the entry's set: options (a delayed job: its queue).
    def enqueue_options
      return @job.enqueue_options if @job

      @queue ? { queue: @queue } : {}
    end

    # The run's idempotency key (recurring jobs only).
    def idempotency_key
      return nil unless @job

      @idempotency_key ||= Native.idempotency_key(@namespace, @key, @fire_epoch)
    end

    # [args, kwargs] for the run, placeholders filled.
    def arguments
      @arguments ||= if @job.nil? then [[], {}]
                     elsif @job.templated? then @job.arguments_for(@fire_epoch, self)
                     else [@job.args, @job.kwargs]
                     end
    end

    # Keywords a callable job accepts (see Job#call_keywords).
    def call_keywords
      @job&.call_keywords
    end

    # Runs the planned dispatch (called by the worker pool).
    def call
      dispatcher = @runner
      @runner = nil
      dispatcher.run(self, @plan, @done)
    end

    def prepare(dispatcher, plan, done) # :nodoc:
      @runner = dispatcher
      @plan = plan
      @done = done
      self
    end

    def to_h
      { key: key, fire_time: fire_time&.iso8601, idempotency_key: idempotency_key, job_id: job_id,
        job_class: job_class, queue: queue, status: status, error: error, duration: duration, node: node }.compact
    end

    def inspect
      "#<#{self.class} #{recurring? ? "#{key} @ #{fire_time&.iso8601}" : "delayed #{job_id}"} #{status}>"
    end
  end

  # Turns a job (class name, class or callable) plus arguments into a run,
  # following one set of rules for recurring and delayed jobs alike:
  #
  # - a String class name is constantized at dispatch (only constant paths;
  #   with delayed_job_allowed_class_prefixes set, a name outside them is
  #   refused); a Class/Module is used as given;
  # - ActiveJob-like (responds to perform_later): set(queue:, priority:, ...).perform_later(*args, **kwargs)
  #   (the job's queue, priority and set: options; set is skipped when there are none);
  # - Sidekiq-like (includes Sidekiq::Job/Worker or responds to perform_async):
  #   set(queue:, ...).perform_async(*args) (kwargs, if any, go last as a Hash
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
    # URL and key=value passwords in the message are redacted: the text goes
    # to the log and the dispatch log.
    def self.describe_error(error)
      text = Kaal.redact_text("#{error.class}: #{error.message.to_s.lines.first&.chomp}")
      text.size > 500 ? "#{text[0, 500]}..." : text
    end

    # wrapper: a callable that receives a block and runs each job dispatch
    # inside it (kaal-rails: the Rails executor). A failed run keeps its
    # error in dispatch.exception; the scheduler emits it as a
    # dispatch_failed event, which config.error_handlers subscribe to.
    def initialize(pool:, allowed_prefixes:, logger:, wrapper: nil)
      @pool = pool
      @allowed_prefixes = allowed_prefixes
      @logger = logger
      @wrapper = wrapper
    end

    # How to run +target+ (a class name, a Class/Module or a callable):
    # [:callable, target], [:active_job, klass], [:sidekiq, klass],
    # [:perform, klass], [:instance, klass] or [:refused, error]. A String is
    # constantized now; the scheduler plans once per tick and class name.
    def plan(target)
      return [:callable, target] if target.respond_to?(:call) && !target.is_a?(Module)

      klass = resolve(target)
      if active_job?(klass) then [:active_job, klass]
      elsif sidekiq?(klass) then [:sidekiq, klass]
      elsif klass.respond_to?(:perform) then [:perform, klass]
      elsif klass.is_a?(Class) && klass.public_method_defined?(:perform) then [:instance, klass]
      else
        [:refused, Refused.new("#{klass} does not respond to perform, perform_later or perform_async " \
                               "(and its instances do not respond to perform)")]
      end
    rescue StandardError, ScriptError => e
      [:refused, e]
    end

    # Plans and runs +target+ for +dispatch+; +done+ (or the block) is called
    # with the finished dispatch.
    def call(dispatch, target, done = nil, &block)
      execute(dispatch, plan(target), done || block)
    end

    # Runs a planned dispatch and calls done.call(dispatch) with the status
    # set, on whichever thread finished it. Enqueues (ActiveJob, Sidekiq)
    # happen now; plain jobs and callables go to the worker pool. Never raises.
    def execute(dispatch, plan, done)
      kind, subject = plan
      case kind
      when :perform, :instance, :callable
        dispatch.status = "pending"
        return dispatch if @pool&.post(dispatch.prepare(self, plan, done))

        run(dispatch, plan, done)
      when :refused
        dispatch.duration = 0.0
        complete(dispatch, subject, done)
      else
        timed(dispatch, done) do
          args, kwargs = dispatch.arguments
          if kind == :active_job
            enqueue_active_job(subject, dispatch.enqueue_options, args, kwargs)
          else
            enqueue_sidekiq(subject, dispatch.enqueue_options, args, kwargs)
          end
        end
      end
    end

    # Runs a plain job or callable (on a pool thread, or inline without a pool).
    def run(dispatch, plan, done)
      kind, subject = plan
      timed(dispatch, done) do
        if kind == :callable
          call_callable(subject, dispatch)
        else
          args, kwargs = dispatch.arguments
          (kind == :perform ? subject : subject.new).perform(*args, **kwargs)
        end
      end
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
      return if Dispatcher.allowed_class?(name, @allowed_prefixes)

      raise Refused, "job class #{name.delete_prefix("::")} is outside delayed_job_allowed_class_prefixes " \
                     "(#{@allowed_prefixes.join(", ")})"
    end

    # true when the class name +name+ is allowed by +prefixes+ (nil or empty:
    # any). Prefixes match whole constant path segments: "MyApp" allows
    # MyApp and MyApp::*, never MyAppEvil; leading and trailing "::" are
    # ignored ("::MyApp::" is "MyApp").
    def self.allowed_class?(name, prefixes)
      return true if prefixes.nil? || prefixes.empty?

      plain = name.to_s.delete_prefix("::")
      prefixes.any? do |prefix|
        base = prefix.to_s.delete_prefix("::").delete_suffix("::")
        plain == base || plain.start_with?("#{base}::")
      end
    end

    private

    # Runs the block, sets dispatch.duration to the time it took, and
    # completes the dispatch with the error it raised (nil when none).
    def timed(dispatch, done)
      started = Clock.monotonic
      error = nil
      begin
        @wrapper ? @wrapper.call { yield } : yield
      rescue StandardError, ScriptError => e
        error = e
      end
      dispatch.duration = Clock.monotonic - started
      complete(dispatch, error, done)
    end

    def active_job?(klass)
      klass.respond_to?(:perform_later)
    end

    def sidekiq?(klass)
      return true if klass.respond_to?(:perform_async)
      return false unless defined?(::Sidekiq)

      [(::Sidekiq::Job if defined?(::Sidekiq::Job)), (::Sidekiq::Worker if defined?(::Sidekiq::Worker))]
        .compact.any? { |m| klass.include?(m) }
    end

    def enqueue_active_job(klass, options, args, kwargs)
      target = options.empty? || !klass.respond_to?(:set) ? klass : klass.set(**options)
      target.perform_later(*args, **kwargs)
    end

    def enqueue_sidekiq(klass, options, args, kwargs)
      target = options.empty? || !klass.respond_to?(:set) ? klass : klass.set(**options)
      args += [kwargs.transform_keys(&:to_s)] unless kwargs.empty?
      target.perform_async(*args)
    end

    def call_callable(callable, dispatch)
      keywords = dispatch.call_keywords
      return callable.call if keywords.nil? || keywords == []

      all = { fire_time: dispatch.fire_time, idempotency_key: dispatch.idempotency_key, key: dispatch.key }
      keywords == :all ? callable.call(**all) : callable.call(**all.slice(*keywords))
    end

    def complete(dispatch, error, done)
      if error
        dispatch.status = "failed"
        dispatch.error = Dispatcher.describe_error(error)
        dispatch.exception = error
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

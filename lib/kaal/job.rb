# frozen_string_literal: true

module Kaal
  # One recurring job: a key, a cron expression and what to run (a job class
  # or a callable). Built from the scheduler file or Kaal.register; every
  # mistake raises ConfigurationError starting with +location+ (the file and
  # the job key) and naming the field.
  class Job
    CONSTANT_PATH = /\A(::)?[A-Z]\w*(::[A-Z]\w*)*\z/.freeze
    FIELDS = %w[key cron job_class enabled queue priority set args kwargs time_zone catch_up handoff].freeze

    # What a job runs and when, without its key: built and checked once per
    # distinct definition and shared by every job defined the same way (a
    # million jobs with one cron expression and one class hold one Spec, one
    # parsed Cron). Immutable.
    class Spec
      attr_reader :cron, :job_class, :callable, :queue, :priority, :args, :kwargs, :catch_up, :enabled, :source,
                  :call_keywords, :enqueue_options, :templated, :handoff, :location

      def initialize(values, location = nil)
        @cron, @job_class, @callable, @queue, @priority, @args, @kwargs, @catch_up, @enabled, @source,
          @call_keywords, @enqueue_options, @templated, @handoff = values
        @location = location
        freeze
      end

      # This Spec with other (checked) args; +templated+: whether args or
      # kwargs hold placeholders.
      def with_args(args, templated)
        ArgsSpec.new(self, args, templated)
      end

      # Whether the kwargs hold placeholders (an ArgsSpec of this one is
      # templated when they do, or its args do).
      def kwargs_templated?
        Placeholders.check(@kwargs, "kwargs") || @kwargs[:idempotency_key] == ""
      end

      # This Spec for the jobs of one place (a section of the scheduler
      # file) that tells each job where it is: location.of(key) (see
      # Job#location). The jobs then need no location of their own.
      def at(location)
        Spec.new([@cron, @job_class, @callable, @queue, @priority, @args, @kwargs, @catch_up, @enabled, @source,
                  @call_keywords, @enqueue_options, @templated, @handoff], location)
      end
    end

    # A Spec that differs from another (base) only in its args: a job per
    # customer (args: [id]) holds three values of its own instead of a
    # Spec's fifteen. Answers as a Spec does. Immutable.
    class ArgsSpec
      attr_reader :args, :templated, :base # base: the Spec it differs from

      def initialize(base, args, templated)
        @base = base
        @args = args
        @templated = templated
        freeze
      end

      %i[cron job_class callable queue priority kwargs catch_up enabled source call_keywords enqueue_options handoff
         location kwargs_templated?].each do |name|
        class_eval("def #{name} = @base.#{name}", __FILE__, __LINE__)
      end

      def with_args(args, templated)
        ArgsSpec.new(@base, args, templated)
      end

      def at(location)
        ArgsSpec.new(@base.at(location), @args, @templated)
      end
    end

    # Specs by their definition (cron, zone, class, ...): bounded, so
    # millions of distinct definitions cost no more than building each.
    @specs = {}
    @last = nil
    # Definitions seen recently, by their hash without the args
    # (Native.values_hash): [definition, Spec, whether its kwargs hold
    # placeholders]. A job per customer, each with its cron and zone, finds
    # the Spec of its definition here and only its args are checked. Small:
    # an app has a few dozen such definitions, not thousands.
    @bases = {}
    @with_args = nil # the last Job Native.build_alike made (the next one with the same args shares its Spec)
    SPECS_MAX = 4096
    BASES_MAX = 256
    ARGS_AT = 7 # where args are in a definition (see Job.build)
    EMPTY_LIST = [].freeze # the args of a job without any (Kaal.register's default)
    EMPTY_MAP = {}.freeze
    private_constant :SPECS_MAX, :BASES_MAX, :ARGS_AT

    @crons = {}

    class << self
      # The parsed Cron of an expression in a zone (name), shared by every
      # Spec that has them (a Cron is immutable): definitions that differ
      # only in args parse their cron once. Bounded like the Specs.
      def cron_for(expression, zone)
        crons = @crons
        key = [expression, zone]
        crons[key] || begin
          cron = yield
          crons.clear if crons.size >= SPECS_MAX
          crons[key.map { |s| s.frozen? ? s : s.dup.freeze }] = cron
        end
      end

      # The cached Spec of a definition, or the one the block builds; the
      # block is given the previous Spec when only the args differ from its
      # definition (to build a copy with these args), else nil.
      def spec_for(definition)
        # a million Kaal.register calls alike: the previous definition is
        # compared first (one eql?, no hash of thirteen values); one pair,
        # read and replaced whole, so threads never see half of it. eql?
        # compares contents, so a hit needs no copy of set, args or kwargs.
        last = @last
        return last[1] if last && (NATIVE_ALIKE ? Native.same_values?(last[0], definition) : last[0].eql?(definition))

        keep(definition)
        if last && NATIVE_ALIKE && Native.same_values?(last[0], definition, ARGS_AT)
          # a job per customer (args: [id]): not cached, as they seldom come back
          spec = yield last[1]
        else
          specs = @specs
          spec = specs[definition] || begin
            spec = yield nil
            specs.clear if specs.size >= SPECS_MAX
            specs[definition.freeze] = spec
          end
        end
        @last = [definition.freeze, spec].freeze
        remember_base(definition, spec) if NATIVE_ALIKE
        spec
      end

      private

      # A job defined as +definition+ but for its args (plain values, a
      # plain key) is then made natively from +spec+ (Job.build).
      def remember_base(definition, spec)
        base = spec.is_a?(ArgsSpec) ? spec.base : spec
        bases = @bases
        bases.clear if bases.size >= BASES_MAX
        bases[Native.values_hash(definition, ARGS_AT)] = [definition, base, base.kwargs_templated?].freeze
      end

      # The caller may change its Strings, set, args or kwargs later: a
      # definition the cache keeps (and its Spec) holds copies.
      def keep(definition)
        definition.each_with_index do |value, i|
          case value
          when String then definition[i] = value.dup.freeze unless value.frozen?
          when Array, Hash then definition[i] = snapshot(value)
          end
        end
      end

      # A list or mapping as it is now (the caller may change theirs later).
      def snapshot(value)
        case value
        when Array then value.empty? ? EMPTY_LIST : value.dup.freeze
        when Hash then value.empty? ? EMPTY_MAP : value.dup.freeze
        else value
        end
      end
    end

    NATIVE_ALIKE = defined?(Native.job_alike) && defined?(Native.same_values?) && defined?(Native.build_alike) ? true : false
    private_constant :NATIVE_ALIKE

    attr_reader :key, :spec


    def initialize(key:, cron:, location:, source:, job_class: nil, callable: nil, queue: nil, args: [],
                   kwargs: {}, time_zone: nil, catch_up: nil, enabled: true, default_time_zone: "UTC",
                   priority: nil, set: nil, handoff: nil)
      setup(key, location, [cron, time_zone || default_time_zone, job_class, callable, queue, priority, set, args,
                            kwargs, catch_up, enabled, source, handoff])
    end

    # Job.new(key:, location:, cron:, ...) with the definition fields in
    # positional order (cron, zone, job_class, callable, queue, priority,
    # set, args, kwargs, catch_up, enabled, source, handoff): the same job
    # and checks without keyword-argument handling, for Kaal.register at a
    # million calls.
    def self.build(key, location, definition)
      # defined as the previous job (Kaal.register in a loop) with a plain
      # key: its Spec, the Job made in one native call; so too one defined
      # as a job seen recently (@bases) but for its args (a job per
      # customer, with its cron and zone): the args are all there is to check
      if location.nil? && NATIVE_ALIKE
        job = Native.build_alike(self, key, definition, ARGS_AT, @last, @bases, @with_args)
        return @with_args = job if job
      end

      job = allocate
      job.__send__(:setup, key, location, definition)
      job
    end

    # Job.build for a definition already checked: +spec+, the Spec of a job
    # defined the same way (a scheduler file's next entry that differs only
    # in its key). Only the key is checked.
    def self.build_alike(key, location, spec)
      # a plain key and no location: the same Job made in one native call
      return Native.job_alike(self, key, spec) || new_alike(key, location, spec) if location.nil? && NATIVE_ALIKE

      new_alike(key, location, spec)
    end

    def self.new_alike(key, location, spec)
      job = allocate
      job.__send__(:setup_alike, key, location, spec)
      job
    end
    private_class_method :new_alike

    private

    def setup_alike(key, location, spec)
      @key = check_key(key, location) # the same instance variables, in the same order, as setup
      @spec = spec
      @location = location unless location.nil?
    end

    def setup(key, location, definition)
      # Three instance variables stay inside the object (no separate
      # table); @location only when it is not derived from the key.
      @key = check_key(key, location)
      @spec = Job.spec_for(definition) { |like| like ? respec_args(like, definition[ARGS_AT], location) : build_spec(definition, location) }
      @location = location unless location.nil?
    end

    public

    # Plain methods (not define_method + send): the tick reads these for
    # every due job.
    %i[cron job_class callable queue priority args kwargs catch_up enabled source call_keywords
       enqueue_options handoff].each do |name|
      class_eval("def #{name} = @spec.#{name}", __FILE__, __LINE__)
    end

    # Where the job is defined, for messages: the file and its entry, or the
    # Kaal.register call, with the job key.
    # +given+: the String a caller passed, or an object that makes one
    # (SchedulerFile::Location), kept instead of the text; without one, the
    # Spec's place, which finds the job's entry by its key.
    def location(given = @location)
      if given.nil?
        place = @spec&.location
        return "Kaal.register(key: #{@key.inspect})" if place.nil?

        given = place.of(@key)
      end
      given = given.to_s
      return given if given.include?(@key.inspect)

      "#{given} (job #{@key.inspect})"
    end

    def file?
      source == :file
    end

    # true when args/kwargs hold placeholders to fill at dispatch.
    def templated?
      @spec.templated
    end

    def expression
      cron.expression
    end

    # The positional arguments and keyword arguments for the run at
    # +fire_epoch+, placeholders filled. +idempotency_key+: the String, or
    # an object that gives it when asked (a Dispatch: #idempotency_key; or
    # a callable), so it is computed only when a placeholder uses it.
    def arguments_for(fire_epoch, idempotency_key)
      args = @spec.args
      kwargs = @spec.kwargs
      return [args, kwargs] unless @spec.templated

      values = Values.new(self, fire_epoch, idempotency_key)
      kwargs = Placeholders.fill(kwargs, values)
      kwargs = kwargs.merge(idempotency_key: values["idempotency_key"]) if kwargs[:idempotency_key] == ""
      [Placeholders.fill(args, values), kwargs]
    end

    # The placeholder values of one run (Placeholders.fill reads them with
    # values[name]), each computed when first asked for.
    class Values
      def initialize(job, fire_epoch, idempotency_key)
        @job = job
        @fire_epoch = fire_epoch
        @idempotency_key = idempotency_key
        @iso8601 = nil
      end

      def [](name)
        case name
        when "key" then @job.key
        when "fire_time.unix" then @fire_epoch
        when "idempotency_key" then idempotency_key
        when "fire_time.iso8601" then @iso8601 ||= @job.fire_time(@fire_epoch).iso8601
        end
      end

      private

      def idempotency_key
        given = @idempotency_key
        return given if given.is_a?(String)

        @idempotency_key = given.respond_to?(:idempotency_key) ? given.idempotency_key : given.call
      end
    end

    # The fire time as a Time with the job zone's offset.
    def fire_time(fire_epoch)
      Time.at(fire_epoch).localtime(cron.utc_offset_at(fire_epoch))
    end

    def to_h
      { key: key, cron: expression, time_zone: cron.time_zone, job_class: job_class_name, queue: queue,
        catch_up: catch_up&.to_s, enabled: enabled, source: source.to_s }
    end

    def job_class_name
      case job_class
      when nil then callable ? "(block)" : nil
      when Module then job_class.name
      else job_class
      end
    end

    private

    PLAIN_KEY = /\A[\w.:\/@-]{1,255}\z/.freeze # common keys: nothing more to check but kaal:manual:
    PLAIN_KEY_NATIVE = defined?(Native.plain_key?) ? true : false
    private_constant :PLAIN_KEY, :PLAIN_KEY_NATIVE

    def plain_key?(key)
      key.is_a?(String) && key.encoding == Encoding::UTF_8 && PLAIN_KEY.match?(key) && !key.start_with?("kaal:manual:")
    end

    def check_key(key, location)
      key = key.to_s if key.is_a?(Symbol)
      # Native.plain_key?: the same test in one call (a million keys at start)
      if PLAIN_KEY_NATIVE ? Native.plain_key?(key) : plain_key?(key)
        return key.frozen? ? key : key.dup.freeze
      end

      where = if location.nil? then "Kaal.register(key: #{key.inspect})"
              elsif location.is_a?(String) || !key || location.to_s.include?(key.to_s.inspect) then location.to_s
              else "#{location} (job #{key.to_s.inspect})"
              end
      raise ConfigurationError, "#{where}: key: must be a non-empty String, got #{key.inspect}" unless key.is_a?(String) && !key.strip.empty?
      raise ConfigurationError, "#{where}: key: must be valid UTF-8, got #{key.inspect}" unless key.dup.force_encoding(Encoding::UTF_8).valid_encoding?

      problem = StoredText.problem(key)
      raise ConfigurationError, "#{where}: key: #{problem}" if problem
      if key.start_with?("kaal:manual:")
        raise ConfigurationError, "#{where}: key: \"kaal:manual:\" starts the dispatch-log keys of manual runs " \
                                  "(Kaal.run_now); choose another key"
      end

      key.dup.freeze
    end

    # Checks a definition (the Spec cache missed); errors start with the
    # job's location (+given+ made into text only for a message).
    def build_spec(definition, given)
      cron, zone, job_class, callable, queue, priority, set, args, kwargs, catch_up, enabled, source, handoff = definition
      job_class = check_job_class(job_class, callable)
      call_keywords = callable && accepted_keywords(callable)
      queue = check_queue(queue)
      priority = check_priority(priority)
      enqueue_options = if queue.nil? && priority.nil? && set.nil? then EMPTY_MAP
                        else { queue: queue, priority: priority }.compact.merge(check_set(set)).freeze
                        end
      args = check_args(args)
      kwargs = check_kwargs(kwargs)
      templated = Placeholders.check(args, "args") | Placeholders.check(kwargs, "kwargs")
      templated ||= kwargs[:idempotency_key] == ""
      catch_up = check_catch_up(catch_up)
      handoff = check_handoff(handoff, callable)
      enabled = check_boolean(enabled, "enabled")
      cron = check_cron(cron, zone)
      Spec.new([cron, job_class, callable, queue, priority, args, kwargs, catch_up, enabled, source, call_keywords,
                enqueue_options, templated, handoff])
    rescue ArgumentError => e
      raise ConfigurationError, "#{location(given)}: #{e.message}"
    end

    # The Spec of a definition that differs from +like+'s only in its args:
    # a copy with these args, which are all there is to check.
    def respec_args(like, args, given)
      args = check_args(args)
      templated = Placeholders.check(args, "args")
      like.with_args(args, like.kwargs_templated? || templated)
    rescue ArgumentError => e
      raise ConfigurationError, "#{location(given)}: #{e.message}"
    end

    def check_job_class(job_class, callable)
      if callable && job_class
        raise ArgumentError, "job_class: give either a job class or a block/callable, not both"
      end
      if callable
        raise ArgumentError, "callable: must respond to #call, got #{callable.class}" unless callable.respond_to?(:call)

        return nil
      end
      case job_class
      when nil then raise ArgumentError, "job_class: missing (give a class name, a class, or a block)"
      when Module
        raise ArgumentError, "job_class: anonymous classes cannot be scheduled (give the class a name)" if job_class.name.nil?

        job_class
      when String, Symbol
        name = job_class.to_s.strip
        raise ArgumentError, "job_class: #{job_class.to_s.inspect} is not a constant name (like \"Reports::WeeklyJob\")" unless CONSTANT_PATH.match?(name)

        name.freeze
      else
        raise ArgumentError, "job_class: must be a class name String or a Class/Module, got #{job_class.class}"
      end
    end

    def check_queue(queue)
      return nil if queue.nil?
      raise ArgumentError, "queue: must be a String, got #{queue.inspect} (#{queue.class})" unless queue.is_a?(String) || queue.is_a?(Symbol)

      queue.to_s.freeze
    end

    def check_priority(priority)
      return nil if priority.nil?
      raise ArgumentError, "priority: must be an Integer, got #{priority.inspect}" unless priority.is_a?(Integer)

      priority
    end

    # Further options for the job class's set(...) (ActiveJob: wait,
    # wait_until; Sidekiq: retry, ...). queue and priority have their own fields.
    def check_set(set)
      return {} if set.nil?
      raise ArgumentError, "set: must be a mapping of enqueue options, got #{set.class}" unless set.is_a?(Hash)

      set.each_with_object({}) do |(k, v), h|
        raise ArgumentError, "set: keys must be names, got #{k.inspect}" unless k.is_a?(String) || k.is_a?(Symbol)
        if %w[queue priority].include?(k.to_s)
          raise ArgumentError, "set: #{k} has its own field (#{k}: #{v.inspect} next to job_class)"
        end

        h[k.to_sym] = v
      end
    end

    def check_args(args)
      args = [] if args.nil?
      raise ArgumentError, "args: must be a list (positional arguments), got #{args.class}" unless args.is_a?(Array)

      args.frozen? ? args : args.dup.freeze # spec_for's snapshot is already a frozen copy
    end

    def check_kwargs(kwargs)
      kwargs = {} if kwargs.nil?
      raise ArgumentError, "kwargs: must be a mapping of keyword arguments, got #{kwargs.class}" unless kwargs.is_a?(Hash)
      return EMPTY_MAP if kwargs.empty?

      kwargs.each_with_object({}) do |(k, v), h|
        raise ArgumentError, "kwargs: keys must be names, got #{k.inspect}" unless k.is_a?(String) || k.is_a?(Symbol)

        h[k.to_sym] = v
      end.freeze
    end

    def check_catch_up(value)
      return nil if value.nil?

      sym = value.is_a?(String) ? value.strip.downcase.to_sym : value
      raise ArgumentError, "catch_up: must be one of latest, all, none, got #{value.inspect}" unless Configuration::CATCH_UP.include?(sym)

      sym
    end

    # atomic | at_most_once (nil: the configuration's handoff). A block can
    # only run in this process, so it never hands off atomically.
    def check_handoff(value, callable)
      return nil if value.nil?

      sym = value.is_a?(String) ? value.strip.downcase.to_sym : value
      raise ArgumentError, "handoff: must be atomic or at_most_once, got #{value.inspect}" unless Handoff::MODES.include?(sym)
      if sym == :atomic && callable
        raise ArgumentError, "handoff: atomic is not possible for a block: it runs in this process, there is no " \
                             "job queue to hand it to (use a Sidekiq or Active Job class, or handoff: at_most_once)"
      end

      sym
    end

    def check_boolean(value, field)
      raise ArgumentError, "#{field}: must be true or false, got #{value.inspect}" unless [true, false].include?(value)

      value
    end

    def check_cron(expression, zone)
      raise ArgumentError, "cron: must be a String, got #{expression.inspect}" unless expression.is_a?(String)
      raise ArgumentError, "time_zone: must be a zone name String, got #{zone.inspect}" unless zone.is_a?(String) || zone.is_a?(Symbol) || zone.respond_to?(:tzinfo) || zone.respond_to?(:identifier)

      return Cron.parse(expression, time_zone: zone) unless zone.is_a?(String)

      Job.cron_for(expression, zone) { Cron.parse(expression, time_zone: zone) }
    rescue CronSyntaxError => e
      raise ArgumentError, "cron: #{expression.inspect}: #{e.message}"
    end

    def accepted_keywords(callable)
      params = callable.is_a?(Proc) || callable.is_a?(Method) ? callable.parameters : callable.method(:call).parameters
      return :all if params.any? { |type, _| type == :keyrest }

      params.select { |type, _| %i[key keyreq].include?(type) }.map(&:last)
    end
  end
end

# frozen_string_literal: true

require "json"
require "logger"

module Kaal
  # The runtime settings. Every option has a default, a type and a setter
  # that checks the value; a wrong value raises Kaal::ConfigurationError
  # naming the option (and, when it came from a file or the environment,
  # where it came from).
  #
  #   Kaal.configure do |c|
  #     c.backend = :redis
  #     c.backend_config = { url: "redis://127.0.0.1:6379/0" }
  #     c.namespace = "my-app"
  #   end
  #
  # Options can also come from config/kaal.yml (Kaal.load_config_file!) and
  # from the environment as KAAL_<OPTION> (KAAL_TICK_INTERVAL=1).
  class Configuration
    BACKENDS = %w[memory redis sqlite postgres mysql].freeze
    CATCH_UP = %i[latest all none].freeze
    CONFLICT_POLICIES = %i[error code_wins file_wins].freeze
    LOG_LEVELS = %i[debug info warn error fatal].freeze
    LOG_FORMATS = %i[text json].freeze
    LOG_DISPATCHES = %i[each summary].freeze
    HANDOFF = %i[auto atomic at_most_once].freeze

    # name => [type, default, description]. Types: :backend, :hash, :string,
    # :zone (an IANA zone name the zone database has),
    # :stored / :stored_or_nil (a String every backend can store, see
    # Kaal::StoredText), :positive (number > 0), :non_negative (number >= 0),
    # :count (Integer >= 1), :boolean, :list (of Strings or nil), :class_list
    # (a :list of constant paths), enums
    # (Array of Symbols), :object (Ruby only, never from a file or the
    # environment).
    OPTIONS = {
      backend: [:backend, "memory", "memory | redis | sqlite | postgres | mysql"],
      backend_config: [:hash, {}, "url:, or an Active Record style connection: hash, ..."],
      scheduler_config_path: [:string, "config/kaal-scheduler.yml", "path of the jobs file"],
      namespace: [:stored, "kaal", "prefix of every key and row in the backend"],
      tick_interval: [:positive, 5, "seconds between two ticks"],
      window_lookback: [:non_negative, 120, "seconds a recovering node looks back"],
      window_lookahead: [:non_negative, 0, "seconds a tick looks ahead"],
      lease_ttl: [:positive, 125, "seconds a claim lives (>= window_lookback + tick_interval)"],
      enable_dispatch_recovery: [:boolean, true, "catch up missed runs at start"],
      enable_log_dispatch_registry: [:boolean, true, "record dispatched/failed in the dispatch log"],
      time_zone: [:zone, "UTC", "default zone of the cron expressions"],
      delayed_job_allowed_class_prefixes: [:class_list, nil, "namespaces job classes may come from (MyApp allows MyApp::*)"],
      recovery_window: [:non_negative, 86_400, "seconds looked back at start for missed runs"],
      catch_up: [CATCH_UP, :latest, "default catch-up policy of the jobs"],
      handoff: [HANDOFF, :auto, "default hand-off of the jobs: auto (atomic where the job's queue lives in the " \
                                "backend's store, else at_most_once) | atomic | at_most_once"],
      max_catch_up_runs: [:count, 100, "most runs a catch_up: all job replays at start"],
      scheduler_conflict_policy: [CONFLICT_POLICIES, :error, "a key both in code and in the file"],
      worker_threads: [:count, 5, "threads running plain Ruby jobs"],
      shutdown_timeout: [:non_negative, 30, "seconds a stop waits for running jobs"],
      dispatch_log_retention: [:positive, 7 * 86_400, "seconds dispatch-log rows are kept"],
      cleanup_batch_size: [:count, 1000, "dispatch-log rows deleted per cleanup"],
      delayed_batch_size: [:count, 500, "delayed jobs claimed per round trip"],
      heartbeat_ttl: [:positive, 60, "seconds a node counts as live after its heartbeat"],
      max_backoff: [:positive, 60, "longest wait between two attempts while the backend is down"],
      log_level: [LOG_LEVELS, :info, "level of kaal's own $stdout logger: debug | info | warn | error | fatal"],
      log_format: [LOG_FORMATS, :text, "text (one readable line per event) | json (one JSON object per line)"],
      log_dispatches: [LOG_DISPATCHES, :each, "each (one info line per run) | summary (one info line per tick " \
                                              "that dispatched; each run's line at debug, a failed run's at error)"],
      logger: [:object, nil, "a Logger, used with its own level (default: $stdout at log_level)"],
      error_handlers: [:callables, [], "callables(error, context) told of every failed job and backend error"],
      http_bind: [:bind, nil, "HOST:PORT of the /health and /metrics listener of `kaal start` (off when unset)"],
      read_only: [:boolean, false, "the dashboard (Kaal::Web, kaal web) shows no actions and refuses every POST"],
      job_wrapper: [:callable, nil, "callable that receives a block and runs each job dispatch inside it"],
      node_id: [:stored_or_nil, nil, "this node's name (default hostname:pid:random)"]
    }.freeze

    # Types that only Ruby code can set (never a file or the environment).
    RUBY_ONLY = %i[object callable callables].freeze

    TRUE_WORDS = %w[1 true yes on].freeze
    FALSE_WORDS = %w[0 false no off].freeze

    OPTIONS.each_key do |name|
      attr_reader name

      define_method("#{name}=") { |value| set(name, value) }
    end

    def initialize
      OPTIONS.each { |name, (_, default, _)| instance_variable_set("@#{name}", copy(default)) }
      @backend = "memory"
    end

    def self.option_names
      OPTIONS.keys
    end

    # [host, port] of "HOST:PORT" ("[::1]:9394" for IPv6), or nil.
    def self.split_bind(text)
      m = text.match(/\A\[([0-9A-Fa-f:.]+)\]:(\d{1,5})\z/) || text.match(/\A([^\s:\[\]]+):(\d{1,5})\z/)
      return nil unless m && m[2].to_i <= 65_535

      [m[1], m[2].to_i]
    end

    # Sets +name+ from +value+, checked and normalised. +source+ says where
    # the value came from ("config/kaal.yml", "KAAL_TICK_INTERVAL").
    def set(name, value, source: nil)
      name = name.to_sym
      unless OPTIONS.key?(name)
        raise ConfigurationError, located(source, name, "unknown option (valid options: #{OPTIONS.keys.join(", ")})")
      end

      instance_variable_set("@#{name}", coerce(name, OPTIONS[name][0], value, source))
    end

    # Applies a Hash of options (from a file). Unknown keys are errors.
    def apply(hash, source:)
      hash.each { |name, value| set(name, value, source: source) }
      self
    end

    # Applies KAAL_<OPTION> variables from +env+ and KAAL_BACKEND_URL.
    def apply_env(env = ENV)
      OPTIONS.each do |name, (type, _, _)|
        var = "KAAL_#{name.to_s.upcase}"
        next if RUBY_ONLY.include?(type) || !env.key?(var)

        set(name, parse_env(name, type, env[var], var), source: var)
      end
      if (url = env["KAAL_BACKEND_URL"]) && !url.empty?
        @backend_config = @backend_config.merge(url: url)
      end
      self
    end

    # Cross-option rules. Raises ConfigurationError.
    def validate!(source: nil)
      if lease_ttl < window_lookback + tick_interval
        raise ConfigurationError,
              located(source, :lease_ttl,
                      "must be >= window_lookback + tick_interval (#{window_lookback} + #{tick_interval}), " \
                      "got #{lease_ttl}: a claim must outlive the window a recovering node looks back over")
      end
      looked_back = [window_lookback, enable_dispatch_recovery ? recovery_window : 0].max
      if dispatch_log_retention <= looked_back
        raise ConfigurationError,
              located(source, :dispatch_log_retention,
                      "must be > #{enable_dispatch_recovery ? 'recovery_window' : 'window_lookback'} " \
                      "(#{looked_back}), got #{dispatch_log_retention}: a run whose log row was cleaned up " \
                      "could be claimed and dispatched again")
      end
      self
    end

    # backend_config with Symbol keys (nested connection: too).
    def backend_options
      symbolize(backend_config)
    end

    # The settings as a Hash, secrets redacted (for `kaal status` and logs).
    def to_h(redact: true)
      OPTIONS.each.with_object({}) do |(name, (type, _, _)), h|
        next if RUBY_ONLY.include?(type)

        value = public_send(name)
        value = redact_backend_config(value) if name == :backend_config && redact
        value = value.to_s if value.is_a?(Symbol)
        h[name] = value
      end
    end

    def initialize_copy(other)
      super
      OPTIONS.each_key { |name| instance_variable_set("@#{name}", copy(other.public_send(name))) unless name == :logger }
    end

    private

    def located(source, name, message)
      prefix = source ? "#{source}: " : "kaal configuration: "
      "#{prefix}#{name}: #{message}"
    end

    def bad(source, name, expected, value)
      raise ConfigurationError, located(source, name, "must be #{expected}, got #{describe(value)}")
    end

    def describe(value)
      value = Kaal.redact_url(value) if value.is_a?(String) && value.include?("@")
      value = "[a Hash]" if value.is_a?(Hash) # may hold passwords
      text = value.inspect
      text = "#{text[0, 60]}..." if text.size > 60
      "#{text} (#{value.class})"
    end

    def coerce(name, type, value, source)
      case type
      when :backend
        text = value.is_a?(Symbol) ? value.to_s : value
        bad(source, name, "one of #{BACKENDS.join(", ")}", value) unless text.is_a?(String)
        text = text.strip.downcase
        unless BACKENDS.include?(text)
          raise ConfigurationError,
                located(source, name, "unknown backend #{value.to_s.inspect} (valid backends: #{BACKENDS.join(", ")})")
        end
        text
      when :hash
        value = {} if value.nil?
        bad(source, name, "a Hash", value) unless value.is_a?(Hash)
        symbolize(value)
      when :string
        value = value.to_s if value.is_a?(Symbol)
        bad(source, name, "a non-empty String", value) unless value.is_a?(String) && !value.strip.empty?
        value.dup.freeze
      when :zone
        value = coerce(name, :string, value, source) if value.is_a?(String) || value.is_a?(Symbol) || value.nil?
        begin
          Cron.check_zone(value).dup.freeze
        rescue CronSyntaxError, ArgumentError => e
          raise ConfigurationError, located(source, name, e.message)
        end
      when :stored, :stored_or_nil
        return nil if value.nil? && type == :stored_or_nil

        text = coerce(name, :string, value, source)
        problem = StoredText.problem(text)
        raise ConfigurationError, located(source, name, problem) if problem

        text
      when :positive, :non_negative
        ok = value.is_a?(Numeric) && !(value.is_a?(Float) && (value.nan? || value.infinite?)) &&
             (type == :positive ? value.positive? : value >= 0)
        bad(source, name, type == :positive ? "a number > 0" : "a number >= 0", value) unless ok
        value.is_a?(Integer) || value.is_a?(Float) ? value : value.to_f
      when :count
        bad(source, name, "an Integer >= 1", value) unless value.is_a?(Integer) && value >= 1
        value
      when :boolean
        bad(source, name, "true or false", value) unless [true, false].include?(value)
        value
      when :list, :class_list
        return nil if value.nil?

        list = value.is_a?(String) ? value.split(",").map(&:strip).reject(&:empty?) : value
        bad(source, name, "a list of Strings", value) unless list.is_a?(Array) && list.all? { |v| v.is_a?(String) || v.is_a?(Symbol) }
        list = list.map { |v| v.to_s.strip.dup.freeze }
        if type == :class_list && (wrong = list.find { |v| !Job::CONSTANT_PATH.match?(v.delete_suffix("::")) })
          raise ConfigurationError, located(source, name, "#{wrong.inspect} is not a constant path (like MyApp::Jobs)")
        end
        list.freeze
      when Array
        sym = value.is_a?(String) ? value.strip.downcase.to_sym : value
        bad(source, name, "one of #{type.join(", ")}", value) unless type.include?(sym)
        sym
      when :object
        value
      when :bind
        return nil if value.nil? || (value.is_a?(String) && value.strip.empty?)

        bad(source, name, "HOST:PORT (127.0.0.1:9394, [::1]:9394)", value) unless value.is_a?(String)
        host, port = Configuration.split_bind(value.strip)
        bad(source, name, "HOST:PORT with a port 0-65535 (127.0.0.1:9394, [::1]:9394)", value) unless host
        "#{host.include?(":") ? "[#{host}]" : host}:#{port}".freeze
      when :callable
        bad(source, name, "nil or a callable (responds to call)", value) unless value.nil? || value.respond_to?(:call)
        value
      when :callables
        list = value.nil? ? [] : Array(value)
        bad(source, name, "a list of callables (each responds to call)", value) unless list.all? { |v| v.respond_to?(:call) }
        list.dup.freeze
      end
    end

    def parse_env(name, type, text, var)
      case type
      when :boolean
        word = text.strip.downcase
        return true if TRUE_WORDS.include?(word)
        return false if FALSE_WORDS.include?(word)

        raise ConfigurationError, "#{var}: #{name}: must be one of #{(TRUE_WORDS + FALSE_WORDS).join("/")}, got #{text.inspect}"
      when :positive, :non_negative
        Float(text.strip).then { |f| f == f.floor && f.abs < 2**53 ? f.to_i : f }
      when :count
        Integer(text.strip, 10)
      when :hash
        JSON.parse(text)
      else
        text
      end
    rescue ArgumentError, JSON::ParserError
      raise ConfigurationError, "#{var}: #{name}: cannot parse #{text.inspect} as #{env_kind(type)}"
    end

    def env_kind(type)
      { positive: "a number", non_negative: "a number", count: "an integer", hash: "a JSON object" }.fetch(type, type.to_s)
    end

    def symbolize(value)
      case value
      when Hash then value.each_with_object({}) { |(k, v), h| h[k.to_sym] = symbolize(v) }
      when Array then value.map { |v| symbolize(v) }
      else value
      end
    end

    def copy(value)
      case value
      when Hash then value.each_with_object({}) { |(k, v), h| h[k] = copy(v) }
      when Array then value.map { |v| copy(v) }
      else value
      end
    end

    SECRET_KEYS = %i[password pass passwd secret token sentinel_password].freeze

    def redact_backend_config(config)
      config.each_with_object({}) do |(k, v), h|
        h[k] = if SECRET_KEYS.include?(k.to_sym) then "[REDACTED]"
               # ssl_params key: a private key (PEM text or an OpenSSL object) unless a file path
               elsif k.to_sym == :key && !(v.is_a?(String) && !v.start_with?("-----")) then "[REDACTED]"
               elsif v.is_a?(Hash) then redact_backend_config(v)
               elsif v.is_a?(Array) then v.map { |e| e.is_a?(Hash) ? redact_backend_config(e) : e }
               elsif k.to_sym == :url && v.is_a?(String) then Kaal.redact_url(v)
               else v
               end
      end
    end
  end

  class << self
    # Hides every password in free text (URLs anywhere in it, password=...
    # settings): error messages and log lines go through it. The result is
    # valid UTF-8 (see Kaal::StoredText.utf8).
    def redact_text(text)
      return text unless text.is_a?(String)

      Backend::ConnectionParams.redact_text(StoredText.utf8(text))
    end

    # Hides the password of a connection URL ("redis://:secret@host" ->
    # "redis://:[REDACTED]@host"), using the backend binding when present.
    def redact_url(url)
      if defined?(Backend::ConnectionParams) && Backend::ConnectionParams.respond_to?(:redact)
        Backend::ConnectionParams.redact(url)
      else
        url.to_s.sub(%r{\A([a-z][a-z0-9+.-]*://[^/@:]*:)[^@/]*@}i, '\1[REDACTED]@')
      end
    rescue StandardError
      url.to_s.sub(%r{\A([a-z][a-z0-9+.-]*://[^/@:]*:)[^@/]*@}i, '\1[REDACTED]@')
    end
  end
end

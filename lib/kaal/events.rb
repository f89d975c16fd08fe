# frozen_string_literal: true

module Kaal
  # One event: name (a String such as "dispatch"), time (a UTC Time) and
  # payload (a frozen Hash with Symbol keys; the fields of each event are
  # listed in the README, "Observability").
  class Event
    attr_reader :name, :payload

    def initialize(name, payload, epoch = Process.clock_gettime(Process::CLOCK_REALTIME))
      @name = name
      @payload = payload
      @epoch = epoch
      @time = nil
    end

    # When it was emitted (a UTC Time).
    def time
      @time ||= Time.at(@epoch).utc
    end

    def [](field)
      payload[field]
    end

    def to_h
      { name: name, time: time, payload: payload }
    end

    def inspect
      "#<#{self.class} #{name} #{payload.inspect}>"
    end
  end

  # The one event stream of a process. The scheduler, the dispatcher and the
  # backend calls emit named events here; the log lines, the error handlers,
  # the metrics, the health state, systemd notifications and
  # ActiveSupport::Notifications ("<event>.kaal") all subscribe to it.
  #
  #   sub = Kaal.subscribe("dispatch", "dispatch_failed") { |event| ... }
  #   Kaal.unsubscribe(sub)
  #
  # Emitting costs a Hash lookup when nobody listens to the name: the
  # payload is built only when there is a subscriber. A subscriber that
  # raises is logged and never stops the tick or the other subscribers.
  class Events
    NAMES = %i[tick dispatch dispatch_failed delayed_dispatch backend_error catch_up schedules
               scheduler_start scheduler_stopping scheduler_stop].freeze

    # A subscription returned by #subscribe (give it to #unsubscribe).
    class Subscription
      attr_reader :names, :callable

      def initialize(names, callable, internal)
        @names = names
        @callable = callable
        @internal = internal
        @selective = callable.respond_to?(:wants?)
      end

      def internal?
        @internal
      end

      # false when the callable (one that defines wants?(name)) says it
      # would do nothing with the event +name+ now.
      def wants?(name)
        !@selective || @callable.wants?(name)
      end

      def inspect
        "#<#{self.class} #{names.join(", ")}>"
      end
    end

    # For kaal's own subscribers (Health, Metrics, Systemd): a class that
    # defines EVENTS and #call and sets @events subscribes itself with
    # #install and leaves with #uninstall.
    module Subscriber
      def install
        @subscription ||= @events.subscribe(*self.class::EVENTS, callable: self)
        self
      end

      def uninstall
        @events.unsubscribe(@subscription) if @subscription
        @subscription = nil
      end
    end

    def initialize
      @lock = Mutex.new
      @subscriptions = []
      @index = {}.freeze # name => frozen Array of Subscriptions; replaced, never changed
      @as_names = NAMES.to_h { |n| [n, "#{n}.kaal"] }.freeze
    end

    # Subscribes +callable+ (or the block) to the events named (all when
    # none is named). Unknown names raise ArgumentError.
    def subscribe(*names, callable: nil, internal: false, &block)
      callable ||= block
      raise ArgumentError, "Kaal.subscribe needs a block or a callable" unless callable.respond_to?(:call)

      names = names.flatten.map { |n| check_name(n) }.uniq
      names = NAMES if names.empty?
      sub = Subscription.new(names.freeze, callable, internal)
      @lock.synchronize do
        @subscriptions += [sub]
        reindex
      end
      sub
    end

    # Removes a subscription. Returns true when it was subscribed.
    def unsubscribe(sub)
      @lock.synchronize do
        before = @subscriptions.size
        @subscriptions = @subscriptions.reject { |s| s.equal?(sub) }
        reindex
        @subscriptions.size != before
      end
    end

    # Removes the subscriptions made by applications (Kaal.reset!); kaal's
    # own (log lines, error handlers) stay.
    def clear
      @lock.synchronize do
        @subscriptions = @subscriptions.select(&:internal?)
        reindex
      end
    end

    # true when something listens to +name+ (a subscriber, or an
    # ActiveSupport::Notifications subscriber of "<name>.kaal").
    def listening?(name)
      @index.key?(name) || as_listening?(name) || false
    end

    # true when a subscriber would do something with +name+ now: as
    # listening?, except that a subscriber defining wants?(name) counts only
    # when it says yes (kaal's log lines while the log level leaves their
    # line out). The scheduler builds a successful run's payload only then.
    def wanted?(name)
      subs = @index[name]
      (subs&.any? { |sub| sub.wants?(name) }) || as_listening?(name) || false
    end

    # Emits +name+ with the payload the block returns; the block runs only
    # when something listens. Returns the Event, or nil.
    def emit(name)
      subs = @index[name]
      as = as_listening?(name)
      return nil unless subs || as

      event = Event.new(name.name, yield.freeze)
      subs&.each { |sub| deliver(sub, event) }
      instrument(event) if as
      event
    end

    def inspect
      "#<#{self.class} #{@subscriptions.size} subscriptions>"
    end

    private

    def check_name(name)
      sym = name.is_a?(String) ? name.to_sym : name
      return sym if NAMES.include?(sym)

      raise ArgumentError, "unknown kaal event #{name.inspect} (events: #{NAMES.join(", ")})"
    end

    def reindex
      index = {}
      @subscriptions.each { |sub| sub.names.each { |n| (index[n] ||= []) << sub } }
      @index = index.transform_values(&:freeze).freeze
    end

    def deliver(sub, event)
      sub.callable.call(event)
    rescue StandardError => e
      Kaal.log_plain(:error, "event subscriber #{sub.callable.inspect} raised on #{event.name}: " \
                             "#{e.class}: #{e.message}")
    end

    def as_listening?(name)
      return false unless defined?(::ActiveSupport::Notifications)

      ::ActiveSupport::Notifications.notifier.listening?(@as_names[name])
    rescue StandardError
      false
    end

    # ActiveSupport gets a copy it may change (it adds :exception on errors).
    def instrument(event)
      ::ActiveSupport::Notifications.instrument(@as_names[event.name.to_sym], event.payload.dup)
    rescue StandardError => e
      Kaal.log_plain(:error, "ActiveSupport::Notifications.instrument(#{event.name}.kaal) raised " \
                             "#{e.class}: #{e.message}")
    end
  end
end

module Kaal
  @events = Events.new
  @events.subscribe(Events::NAMES - %i[dispatch_failed scheduler_stopping], callable: Log::Sink.new, internal: true)
  @events.subscribe(:dispatch_failed, :backend_error, callable: Log::ErrorHandlers.new, internal: true)

  class << self
    # The process's event stream (Kaal::Events).
    attr_reader :events

    # Calls the block (or callable:) with each Kaal::Event named (every
    # event when none is named). Returns the subscription.
    #
    #   Kaal.subscribe("dispatch") { |event| puts event[:key] }
    def subscribe(*names, callable: nil, &block)
      @events.subscribe(*names, callable: callable, &block)
    end

    # Removes a subscription Kaal.subscribe returned. true when it was there.
    def unsubscribe(subscription)
      @events.unsubscribe(subscription)
    end
  end
end

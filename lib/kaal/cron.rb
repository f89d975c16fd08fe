# frozen_string_literal: true

module Kaal
  # A parsed cron expression bound to a time zone. The class itself and its
  # primitives are defined by the C extension (ext/kaal/rb_cron.c); this file
  # adds the public API. Instances are immutable, frozen and Ractor-shareable.
  #
  #   cron = Kaal::Cron.parse("30 2 * * *", time_zone: "America/New_York")
  #   cron.next_time(Time.now)             # => 2026-03-09 02:30:00 -0400
  #   cron.next_times(Time.now, count: 3)  # => [Time, Time, Time]
  #   cron.previous_time                   # => Time strictly before now
  #   cron.match?(Time.at(1_773_037_800))  # => true
  #   cron.explain                         # => "At 02:30 every day (America/New_York)"
  #
  # The syntax and the DST rules are described in docs/cron.md (summary in
  # the README, "Cron expressions"). Anything invalid raises
  # Kaal::CronSyntaxError naming the field and the offending token.
  class Cron
    class << self
      # Parses +expression+ (5 or 6 fields, or a macro such as "@daily", with
      # an optional trailing IANA zone name that overrides +time_zone+).
      #
      # +time_zone+ is an IANA name ("Europe/Berlin"), an
      # ActiveSupport::TimeZone or a TZInfo::Timezone; with ActiveSupport
      # loaded, a Rails zone name ("Eastern Time (US & Canada)") too.
      def parse(expression, time_zone: "UTC")
        __parse(expression, zone_name(time_zone))
      rescue CronSyntaxError => e
        hint = e.message.include?("unknown time zone") && zone_database_problem
        raise unless hint

        raise CronSyntaxError, "#{e.message}: #{hint}"
      end

      # Raises CronSyntaxError unless +time_zone+ names a zone this machine's
      # zone database has (the message says when the database itself is
      # missing). Returns the zone's name.
      def check_zone(time_zone)
        name = zone_name(time_zone)
        parse("0 0 1 1 *", time_zone: name)
        name
      end

      # Why zone names cannot be read here, or nil: the zone database
      # (TZDIR, else /usr/share/zoneinfo) is missing or empty, as in slim
      # container images without the tzdata package.
      def zone_database_problem
        tzdir = ENV["TZDIR"].to_s
        dir = tzdir.empty? ? "/usr/share/zoneinfo" : tzdir
        return nil if File.directory?(dir) && !Dir.empty?(dir)

        where = tzdir.empty? ? "#{dir} (set TZDIR to use another directory)" : "#{dir} (from TZDIR)"
        "the zone database #{where} is missing or empty; install the tzdata package " \
          "(apt-get install tzdata, apk add tzdata) or point TZDIR at a zoneinfo directory"
      end

      # true when +expression+ parses (and can fire) in +time_zone+.
      def valid?(expression, time_zone: "UTC")
        parse(expression, time_zone: time_zone)
        true
      rescue CronSyntaxError, ArgumentError
        false
      end

      # Marshal support: a Cron is rebuilt from its expression and zone.
      def _load(data)
        expression, zone = data.split("\0", 2)
        parse(expression, time_zone: zone)
      end

      private

      def zone_name(zone)
        case zone
        when String then rails_zone(zone) || zone
        when nil then "UTC"
        when Symbol then rails_zone(zone.to_s) || zone.to_s
        else
          if zone.respond_to?(:tzinfo) # ActiveSupport::TimeZone
            zone.tzinfo.name
          elsif zone.respond_to?(:identifier) # TZInfo::Timezone
            zone.identifier
          elsif zone.respond_to?(:name) && zone.name.is_a?(String)
            zone.name
          else
            raise ArgumentError, "time_zone must be an IANA zone name (String), an " \
                                 "ActiveSupport::TimeZone or a TZInfo zone, got #{zone.class}"
          end
        end
      end

      # The IANA name of a Rails zone name ("Eastern Time (US & Canada)" ->
      # "America/New_York") when ActiveSupport is loaded, else nil.
      def rails_zone(name)
        return nil if name == "UTC" || !defined?(::ActiveSupport::TimeZone::MAPPING) # UTC: not "Etc/UTC"

        ::ActiveSupport::TimeZone::MAPPING[name]
      end
    end

    # The first fire time strictly after +from+ (a Time, an Integer of Unix
    # seconds, or anything but a String responding to #to_time). The result is a whole-second
    # Time whose utc_offset is the zone's offset at that instant.
    def next_time(from = Time.now)
      __next_time(from)
    end

    # The next +count+ fire times after +from+, in order.
    def next_times(from = Time.now, count:)
      raise ArgumentError, "count must be an Integer, got #{count.class}" unless count.is_a?(Integer)

      __next_times(from, count)
    end

    # The last fire time strictly before +from+.
    def previous_time(from = Time.now)
      __previous_time(from)
    end

    # true when +time+ (a Time, Integer Unix seconds or #to_time) is a fire
    # time of this expression: exactly the instants #next_time produces. A
    # Time with a fractional second is never a fire time.
    def match?(time)
      __match?(time)
    end

    # next_epoch(Integer) -> Integer and previous_epoch(Integer) -> Integer
    # (defined in C) are the same as next_time/previous_time on Unix seconds,
    # without allocating Times: meant for the scheduler's hot path.

    # One English sentence describing the schedule, ending with the zone:
    # "At 02:30 every day (America/New_York)".
    def explain
      Explainer.new(expression, time_zone, seconds: __seconds?, zone_in_text: __zone_in_text?).to_s
    end

    # The UTC offset (seconds) of the zone at +time+.
    def utc_offset_at(time = Time.now)
      __offset_at(time.to_i)
    end

    def to_s
      expression
    end

    def inspect
      "#<#{self.class} #{expression.inspect} #{time_zone}>"
    end

    private_class_method :new # use Kaal::Cron.parse

    def _dump(_level)
      "#{expression}\0#{time_zone}"
    end

    # Immutable: copies are the object itself.
    def dup
      self
    end

    def clone(freeze: true)
      raise ArgumentError, "can't unfreeze #{self.class}" if freeze == false

      self
    end
  end
end

require_relative "cron/explainer"

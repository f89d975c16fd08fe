# frozen_string_literal: true

module Kaal
  # The {{...}} placeholders of a recurring job's args and kwargs, filled at
  # dispatch. A String that is exactly one placeholder takes the value's own
  # type ("{{fire_time.unix}}" becomes an Integer); inside longer text the
  # value is interpolated. Checked once, when the job is defined.
  module Placeholders
    PATTERN = /\{\{\s*([^{}]*?)\s*\}\}/.freeze
    WHOLE = /\A\{\{\s*([^{}]*?)\s*\}\}\z/.freeze
    NAMES = %w[idempotency_key key fire_time.iso8601 fire_time.unix].freeze
    WHOLE_MAX = 4096 # texts whose whole_name is remembered
    @whole = {}

    module_function

    # Raises ArgumentError naming +where+ ("args[0]", "kwargs.report_id") for
    # an unknown or malformed placeholder anywhere in +value+ ("{{" and "}}"
    # only ever open and close one), and for placeholders in Hash keys, which
    # are never filled. Returns true when +value+ contains a placeholder.
    def check(value, where)
      case value
      when String
        found = false
        value.scan(PATTERN) do |(name)|
          unless NAMES.include?(name)
            raise ArgumentError, "#{where}: unknown placeholder {{#{name}}} (known: #{known})"
          end

          found = true
        end
        rest = value.gsub(PATTERN, "")
        if rest.include?("{{") || rest.include?("}}")
          raise ArgumentError, "#{where}: malformed placeholder in #{value.inspect}: write {{name}} with two braces " \
                               "on each side (known: #{known})"
        end
        found
      when Array
        # every element is checked (a later one may be wrong); where is made
        # only for those that can hold a placeholder (args: [<id>] a million times)
        found = false
        value.each_with_index { |v, i| found = true if holder?(v) && check(v, "#{where}[#{i}]") }
        found
      when Hash
        value.each_key { |k| check_key(k, where) }
        found = false
        value.each { |k, v| found = true if holder?(v) && check(v, "#{where}.#{k}") }
        found
      else
        false
      end
    end

    def holder?(value)
      value.is_a?(String) || value.is_a?(Array) || value.is_a?(Hash)
    end

    def check_key(key, where)
      if key.is_a?(Hash) || key.is_a?(Array)
        raise ArgumentError, "#{where}: a key that is itself a #{key.is_a?(Hash) ? "mapping" : "list"} " \
                             "(#{key.inspect}): an unquoted {{...}} in YAML is read as a mapping; quote it " \
                             "(\"{{fire_time.unix}}\")"
      end
      return unless key.is_a?(String) || key.is_a?(Symbol)
      return unless key.to_s.include?("{{") || key.to_s.include?("}}")

      raise ArgumentError, "#{where}: placeholders are filled in values only, not in keys (key #{key.to_s.inspect})"
    end

    def known
      NAMES.map { |n| "{{#{n}}}" }.join(", ")
    end

    # The placeholder name when +text+ is exactly one placeholder, else
    # false; remembered per text (a job's strings are filled at every run).
    def whole_name(text)
      name = @whole[text]
      return name unless name.nil?

      @whole.clear if @whole.size >= WHOLE_MAX
      m = WHOLE.match(text)
      @whole[text.frozen? ? text : text.dup.freeze] = m ? m[1].freeze : false
    end

    # A copy of +value+ with every placeholder filled from +values+ (a Hash
    # from placeholder name to value, or anything answering values[name]);
    # an empty Array or Hash is returned as it is.
    def fill(value, values)
      case value
      when String
        return value unless value.include?("{{")

        name = whole_name(value)
        if name
          values[name]
        else
          value.gsub(PATTERN) { values[Regexp.last_match(1)].to_s }
        end
      when Array then value.empty? ? value : value.map { |v| fill(v, values) }
      when Hash then value.empty? ? value : value.transform_values { |v| fill(v, values) }
      else value
      end
    end
  end
end

# frozen_string_literal: true

require "json"

module Kaal
  # Checks for Kaal.enqueue_at: everything is verified at enqueue, so a
  # stored job can always be dispatched as it was given.
  module Delayed
    module_function

    # Integer Unix milliseconds of +at+ (a Time, Unix seconds, or anything
    # with #to_time).
    def run_at_ms(at)
      seconds = case at
                when Time then at.to_r
                when Integer, Rational then at
                when Float
                  raise ArgumentError, "at: must be finite, got #{at}" if at.nan? || at.infinite?

                  at
                else
                  unless at.respond_to?(:to_time) && !at.is_a?(String)
                    raise ArgumentError, "at: must be a Time or Unix seconds, got #{at.inspect} (#{at.class})"
                  end

                  at.to_time.to_r
                end
      (seconds * 1000).floor
    end

    def job_id(job_id)
      unless job_id.is_a?(String) && !job_id.strip.empty?
        raise ArgumentError, "job_id: must be a non-empty String (the delayed job's identity), got #{job_id.inspect}"
      end

      stored(job_id, "job_id")
    end

    # The stored class name; refuses anonymous classes and non-constant names.
    def job_class_name(job_class)
      case job_class
      when Module
        name = job_class.name
        raise ArgumentError, "job_class: anonymous classes cannot be stored (give the class a name)" if name.nil?

        stored(name, "job_class")
      when String, Symbol
        name = job_class.to_s
        unless Job::CONSTANT_PATH.match?(name)
          raise ArgumentError, "job_class: #{name.inspect} is not a constant name (like \"ReminderJob\")"
        end

        stored(name.delete_prefix("::"), "job_class")
      else
        raise ArgumentError, "job_class: must be a class name String or a Class/Module, got #{job_class.inspect}"
      end
    end

    def queue(queue)
      return nil if queue.nil?
      raise ArgumentError, "queue: must be a String, got #{queue.inspect}" unless queue.is_a?(String) || queue.is_a?(Symbol)

      stored(queue.to_s, "queue")
    end

    # text, when every backend can store it (Kaal::StoredText).
    def stored(text, what)
      problem = StoredText.problem(text)
      raise ArgumentError, "#{what}: #{problem}" if problem

      text
    end

    # JSON text of +args+; raises ArgumentError naming the first value that
    # would not come back unchanged from JSON.
    def args_json(args)
      if args.is_a?(Hash)
        raise ArgumentError, "args: delayed jobs take positional arguments only (an Array), got a Hash; " \
                             "keyword arguments are not supported"
      end
      raise ArgumentError, "args: must be an Array of positional arguments, got #{args.class}" unless args.is_a?(Array)

      args.each_with_index do |value, i|
        if value.is_a?(Hash)
          raise ArgumentError, "args[#{i}]: delayed jobs take positional arguments only; a Hash argument " \
                               "would be taken for keyword arguments (pass its values, or JSON text)"
        end
        check_json(value, "args[#{i}]")
      end
      JSON.generate(args)
    end

    def check_json(value, where)
      case value
      when String
        raise ArgumentError, "#{where}: #{value.inspect} is not valid UTF-8" unless value.dup.force_encoding(Encoding::UTF_8).valid_encoding?
      when Integer, true, false, nil then nil
      when Float
        raise ArgumentError, "#{where}: #{value} cannot be stored as JSON" if value.nan? || value.infinite?
      when Array then value.each_with_index { |v, i| check_json(v, "#{where}[#{i}]") }
      when Hash
        value.each do |k, v|
          raise ArgumentError, "#{where}: Hash key #{k.inspect} (#{k.class}) would come back as a String from JSON" unless k.is_a?(String)

          check_json(v, "#{where}[#{k.inspect}]")
        end
      else
        raise ArgumentError, "#{where}: #{value.inspect} (#{value.class}) does not survive a JSON round trip; " \
                             "pass Strings, numbers, true/false/nil, Arrays or Hashes with String keys"
      end
    end
  end
end

# frozen_string_literal: true

require "json"

module Kaal
  class CLI
    # `kaal schedules list|add|remove`: the stored schedules of the
    # configured backend (Kaal.schedules), seen by every node within a tick.
    module Schedules
      LIST_LIMIT = 1000 # rows per page of `list`

      private

      def cmd_schedules(args, opts)
        action = args.shift
        case action
        when "list" then schedules_list(args, opts)
        when "add" then schedules_add(args, opts)
        when "remove", "rm" then schedules_remove(args, opts)
        when nil then raise UsageError, "schedules: missing action (list, add or remove; usage: kaal #{COMMANDS["schedules"].usage})"
        else raise UsageError, "schedules: unknown action #{action.inspect} (list, add or remove)"
        end
      end

      def schedules_list(args, opts)
        no_arguments(args, "schedules list")
        boot(opts, load_jobs: false, quiet: true)
        shared_backend!
        rows = []
        after = nil
        loop do
          page = Kaal.schedules.list(after: after, limit: LIST_LIMIT)
          rows.concat(page)
          break if page.size < LIST_LIMIT

          after = page.last[:key]
        end
        if opts[:json]
          @out.puts JSON.pretty_generate(rows.map { |r| schedule_json(r) })
        elsif rows.empty?
          @out.puts "no stored schedules (namespace #{Kaal.configuration.namespace})"
        else
          table(rows.map { |r| schedule_cells(r) }, %w[KEY CRON ZONE STATE CLASS QUEUE ARGS])
        end
        0
      end

      def schedules_add(args, opts)
        key = args.shift or raise UsageError, "schedules add: missing KEY (usage: kaal #{COMMANDS["schedules"].usage})"
        no_arguments(args, "schedules add")
        raise UsageError, "schedules add: --cron EXPR is required" unless opts[:cron]
        raise UsageError, "schedules add: --class NAME is required" unless opts[:class]

        boot(opts, load_jobs: :if_present, quiet: true)
        shared_backend!
        row = Kaal.schedules.upsert(key: key, cron: opts[:cron], job_class: opts[:class],
                                    args: json_option(opts[:args], "--args", Array, []),
                                    kwargs: json_option(opts[:kwargs], "--kwargs", Hash, {}),
                                    time_zone: opts[:time_zone], queue: opts[:queue], enabled: !opts[:disabled])
        if opts[:json]
          @out.puts JSON.generate(schedule_json(row))
        else
          @out.puts "stored: #{row[:key]}  #{row[:cron]}  #{row[:time_zone] || Kaal.configuration.time_zone}  " \
                    "#{row[:job_class]}#{" (disabled)" unless row[:enabled]}"
        end
        0
      end

      def schedules_remove(args, opts)
        key = args.shift or raise UsageError, "schedules remove: missing KEY"
        no_arguments(args, "schedules remove")
        boot(opts, load_jobs: false, quiet: true)
        shared_backend!
        if Kaal.schedules.delete(key)
          @out.puts(opts[:json] ? JSON.generate(removed: key) : "removed: #{key}")
          return 0
        end
        @err.puts "kaal: no stored schedule #{key.inspect} (namespace #{Kaal.configuration.namespace})"
        1
      end

      # The memory backend lives in one process: this command's. What it
      # stored would vanish when the command exits.
      def shared_backend!
        return unless Kaal.configuration.backend == "memory"

        raise Kaal::ConfigurationError, "kaal schedules: the memory backend keeps stored schedules in one process " \
                                        "(this command's, gone when it exits); configure a shared backend " \
                                        "(sqlite, redis, postgres, mysql), or use Kaal.schedules in the process that runs the scheduler"
      end

      # --args '[1, "a"]' / --kwargs '{"a": 1}': JSON of the given type.
      def json_option(text, name, type, default)
        return default if text.nil?

        value = JSON.parse(text)
        return value if value.is_a?(type)

        raise UsageError, "#{name}: expected a JSON #{type == Array ? "array" : "object"}, got #{text}"
      rescue JSON::ParserError => e
        raise UsageError, "#{name}: not valid JSON (#{e.message.lines.first.to_s.strip[0, 80]})"
      end

      def schedule_cells(row)
        [row[:key], row[:cron], row[:time_zone] || "(#{Kaal.configuration.time_zone})", row[:state], row[:job_class],
         row[:queue], args_text(row)]
      end

      def args_text(row)
        parts = []
        parts << JSON.generate(row[:args]) unless row[:args].empty?
        parts << JSON.generate(row[:kwargs]) unless row[:kwargs].empty?
        parts.join(" ")
      end

      def schedule_json(row)
        row.merge(updated_at: row[:updated_at].utc.iso8601)
      end
    end
  end
end

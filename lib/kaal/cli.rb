# frozen_string_literal: true

require "optparse"
require "json"
require "time"
require "kaal"
require "kaal/cli/runtime"
require "kaal/cli/observability"
require "kaal/cli/web"
require "kaal/cli/schedules"

module Kaal
  # The `kaal` command line. Kaal::CLI.start(ARGV) runs one command and
  # returns the exit status: 0 ok, 1 runtime failure, 2 usage, configuration
  # or cron error. Errors are one line on stderr ("kaal: minute field: ...").
  #
  # Adding a command takes two steps:
  #
  #   1. an entry in COMMANDS: its usage line, a one-line summary and its
  #      options (OptionParser switch specs; the value lands in opts under the
  #      long name, "--time-zone ZONE" -> opts[:time_zone]);
  #   2. a method `cmd_<name>(args, opts)` that returns the exit status (an
  #      Integer; anything else means 0). It writes to @out; it raises UsageError (or a
  #      Kaal::ConfigurationError / Kaal::CronSyntaxError) for exit 2.
  #
  # Global options (--config, --env, --require, --json) are accepted before
  # or after the command and are in opts too.
  class CLI
    # Wrong arguments: exit status 2 with the message on stderr.
    class UsageError < StandardError; end

    Command = Struct.new(:usage, :summary, :options, keyword_init: true)

    COMMANDS = {
      "next" => Command.new(
        usage: "next EXPR [--count N] [--time-zone ZONE] [--from ISO8601]",
        summary: "print the next fire times of a cron expression, one per line",
        options: [
          ["-n", "--count N", Integer, "how many fire times (default 1)"],
          ["-z", "--time-zone ZONE", String, "IANA zone name (default UTC; a zone in EXPR wins)"],
          ["--from TIME", String, "start after this ISO 8601 time or Unix seconds (default now)"]
        ]
      ),
      "explain" => Command.new(
        usage: "explain EXPR [--time-zone ZONE]",
        summary: "describe a cron expression in English",
        options: [["-z", "--time-zone ZONE", String, "IANA zone name (default UTC; a zone in EXPR wins)"]]
      ),
      "init" => Command.new(
        usage: "init [--backend=memory|redis|sqlite|postgres|mysql] [--force]",
        summary: "write config/kaal.yml and config/kaal-scheduler.yml",
        options: [["-b", "--backend NAME", String, "memory (default), redis, sqlite, postgres or mysql"],
                  ["-f", "--force", "overwrite existing files"]]
      ),
      "start" => Command.new(
        usage: "start [--http HOST:PORT]",
        summary: "run the scheduler in the foreground (TERM/INT stop it gracefully)",
        options: [["--http HOST:PORT", String, "serve GET /health and GET /metrics there (default: http_bind; off)"]]
      ),
      "status" => Command.new(
        usage: "status",
        summary: "show settings, jobs, live nodes and recent dispatches (exit 1: backend down, 2: bad config)",
        options: []
      ),
      "web" => Command.new(
        usage: "web [--bind HOST:PORT] [--read-only]",
        summary: "serve the dashboard (Kaal::Web; needs the puma gem)",
        options: [["-b", "--bind HOST:PORT", String, "address to listen on (default 127.0.0.1:9395)"],
                  ["--read-only", "no pause/resume/run now/cancel buttons"]]
      ),
      "schedules" => Command.new(
        usage: "schedules list|add KEY --cron EXPR --class NAME [...]|remove KEY",
        summary: "list, add (or replace) and remove the stored schedules shared by every node",
        options: [
          ["--cron EXPR", String, "add: the cron expression (5 or 6 fields)"],
          ["--class NAME", String, "add: the job class name"],
          ["--args JSON", String, "add: positional arguments, a JSON array (default [])"],
          ["--kwargs JSON", String, "add: keyword arguments, a JSON object (default {})"],
          ["-z", "--time-zone ZONE", String, "add: IANA zone name (default: the time_zone setting)"],
          ["-q", "--queue NAME", String, "add: queue (ActiveJob, Sidekiq)"],
          ["--disabled", "add: store it with enabled: false (kept, not run)"]
        ]
      ),
      "tick" => Command.new(usage: "tick", summary: "run one scheduler tick and print what it dispatched", options: []),
      "validate" => Command.new(usage: "validate", summary: "check the configuration and scheduler files", options: []),
      "migrate" => Command.new(usage: "migrate", summary: "create or upgrade the backend's tables (the missing schema steps)",
                               options: []),
      "version" => Command.new(usage: "version", summary: "print the kaal version", options: []),
      "help" => Command.new(usage: "help [COMMAND]", summary: "print this help, or a command's", options: [])
    }.freeze

    GLOBAL_OPTIONS = [
      ["-c", "--config PATH", String, "configuration file (default config/kaal.yml)"],
      ["-e", "--env NAME", String, "environment section of the configuration files"],
      ["-r", "--require FILE", String, "require FILE first (may be repeated)"],
      ["--json", "print data as JSON"]
    ].freeze

    MAX_COUNT = 100_000

    include Runtime # init, start, status, tick, validate, migrate (lib/kaal/cli/runtime.rb)
    include Observability # --http, systemd, the health of `kaal status` (lib/kaal/cli/observability.rb)
    include Web # `kaal web` (lib/kaal/cli/web.rb)
    include Schedules # `kaal schedules` (lib/kaal/cli/schedules.rb)

    def self.start(argv, out: $stdout, err: $stderr)
      new(out: out, err: err).run(argv.dup)
    end

    def initialize(out: $stdout, err: $stderr)
      @out = out
      @err = err
    end

    def run(argv)
      opts = { require: [] }
      name = extract_command(argv)
      return usage(0) if %w[-h --help].include?(name)
      if name.nil?
        usage(2, @err)
        return 2
      end

      command = COMMANDS[name] or raise UsageError, "unknown command #{name.inspect} (run `kaal help` for the list)"
      parser = parser(name, command, opts)
      args = parser.parse(argv)
      return @out.puts(parser.help) || 0 if opts[:help]

      opts[:require].each { |file| require_file(file) }
      status = send("cmd_#{name}", args, opts)
      status.is_a?(Integer) ? status : 0
    rescue Errno::EPIPE
      0 # the reader went away (`kaal next ... | head -1`): nothing left to say
    rescue UsageError, OptionParser::ParseError => e
      fail_with(2, e.message)
    rescue Kaal::CronSyntaxError, Kaal::ConfigurationError => e
      fail_with(2, e.message)
    rescue Interrupt
      130
    rescue StandardError, ScriptError => e
      fail_with(1, "#{e.message} (#{e.class})")
    end

    private

    # -- commands -------------------------------------------------------------

    def cmd_next(args, opts)
      cron = Kaal::Cron.parse(expression(args, "next"), time_zone: opts[:time_zone] || "UTC")
      count = opts.fetch(:count, 1)
      raise UsageError, "--count must be between 1 and #{MAX_COUNT}, got #{count}" unless count.between?(1, MAX_COUNT)

      times = cron.next_times(from_option(opts[:from]), count: count).map(&:iso8601)
      @out.puts(opts[:json] ? JSON.generate(times) : times)
    end

    def cmd_explain(args, opts)
      cron = Kaal::Cron.parse(expression(args, "explain"), time_zone: opts[:time_zone] || "UTC")
      if opts[:json]
        @out.puts JSON.generate(expression: cron.expression, time_zone: cron.time_zone, explanation: cron.explain)
      else
        @out.puts cron.explain
      end
    end

    def cmd_version(args, opts)
      no_arguments(args, "version")
      @out.puts(opts[:json] ? JSON.generate(version: Kaal::VERSION) : "kaal #{Kaal::VERSION}")
    end

    def cmd_help(args, _opts)
      return usage(0) if args.empty?

      command = COMMANDS[args[0]] or raise UsageError, "unknown command #{args[0].inspect} (run `kaal help` for the list)"
      @out.puts parser(args[0], command, {}).help
    end

    # -- helpers for commands ---------------------------------------------------

    # The expression may be one quoted argument or several (`kaal next 0 9 '*' '*' 1`).
    def expression(args, command)
      raise UsageError, "#{command}: missing cron expression (usage: kaal #{COMMANDS[command].usage})" if args.empty?

      args.join(" ")
    end

    def no_arguments(args, command)
      raise UsageError, "#{command}: unexpected argument #{args[0].inspect}" unless args.empty?
    end

    def from_option(text)
      return Time.now if text.nil?
      return Integer(text, 10) if text.match?(/\A-?\d+\z/)

      Time.iso8601(text)
    rescue ArgumentError
      raise UsageError, "--from: #{text.inspect} is not an ISO 8601 time (e.g. 2026-03-07T12:00:00-05:00) or Unix seconds"
    end

    def require_file(file)
      path = File.exist?(file) ? File.expand_path(file) : file
      require path
    rescue LoadError => e
      raise UsageError, "--require: cannot load #{file} (#{e.message})"
    end

    # -- plumbing ----------------------------------------------------------------

    # The first argument that is not a global option (or its value) is the
    # command; it is removed from argv.
    def extract_command(argv)
      takes_value = GLOBAL_OPTIONS.select { |spec| spec.any? { |s| s.is_a?(String) && s.match?(/\A--?\S+ [A-Z]/) } }
                                  .flat_map { |spec| spec.grep(/\A-/).map { |s| s.split(" ", 2)[0] } }
      i = 0
      while i < argv.size
        arg = argv[i]
        return argv.delete_at(i) if !arg.start_with?("-") || %w[-h --help].include?(arg)
        return nil if arg == "--"

        i += takes_value.include?(arg) ? 2 : 1
      end
      nil
    end

    def parser(name, command, opts)
      OptionParser.new do |o|
        o.banner = "Usage: kaal #{command.usage}\n\n#{command.summary.sub(/\A./, &:upcase)}."
        o.program_name = "kaal"
        unless command.options.empty?
          o.separator ""
          o.separator "Options:"
          command.options.each { |spec| define(o, spec, opts) }
        end
        o.separator ""
        o.separator "Global options:"
        GLOBAL_OPTIONS.each { |spec| define(o, spec, opts) }
        o.on("-h", "--help", "show this help") { opts[:help] = true }
      end
    end

    def define(parser, spec, opts)
      key = spec.find { |s| s.is_a?(String) && s.start_with?("--") }[/\A--(?:\[no-\])?([\w-]+)/, 1].tr("-", "_").to_sym
      parser.on(*spec) do |value|
        if opts[key].is_a?(Array)
          opts[key] << value
        else
          opts[key] = value
        end
      end
    end

    def usage(status, io = @out)
      width = COMMANDS.values.map { |c| c.usage.size }.max
      lines = ["Usage: kaal COMMAND [options]", "", "Commands:"]
      COMMANDS.each_value { |c| lines << format("  %-#{width}s  %s", c.usage, c.summary) }
      lines << "" << "Global options:"
      GLOBAL_OPTIONS.each do |spec|
        switches = spec.grep(/\A-/).join(", ")
        lines << format("  %-#{width}s  %s", switches, spec.last)
      end
      lines << "" << "Exit status: 0 ok, 1 runtime failure, 2 usage, configuration or cron error."
      lines << "Run `kaal help COMMAND` for a command's options."
      io.puts lines
      status
    end

    def fail_with(status, message)
      @err.puts "kaal: #{message.to_s.lines.first&.chomp}"
      status
    end
  end
end

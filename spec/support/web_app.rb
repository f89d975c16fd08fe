# frozen_string_literal: true

require "fileutils"
require "net/http"
require "rbconfig"
require "securerandom"
require "socket"
require "tmpdir"

module Kaal
  module Spec
    # A throw-away web app in a temporary directory, served by a real Puma
    # on 127.0.0.1: the harness of the kaal-sinatra, kaal-roda and
    # kaal-hanami specs (see spec/support/web_app_examples.rb for what they
    # check). Only the standard library is loaded here; Puma and the
    # framework run in the child process, under the bundle of the spec run.
    #
    #   app = Kaal::Spec::WebApp.new(files)     # { "config.ru" => "...", "app.rb" => "..." }
    #   app.start(workers: 2, preload: true)     # waits until GET / answers 200
    #   app.wait_for_fires(5)                    # distinct fire times in the job's file
    #   app.duplicates                           # => [] ("key fire_time" seen twice)
    #   app.stop                                 # TERM, waits for the exit; => Process::Status
    #
    # The scheduler file defines one job, spec:every_second (`* * * * * *`),
    # whose class (FireRecorder, in jobs.rb) appends "key fire_time pid" to
    # fires.log with one write(2) per line, so lines from several processes
    # never interleave. config/kaal.yml sets tick_interval 1.
    class WebApp
      JOB_KEY = "spec:every_second"
      BOOT_TIMEOUT = 90  # seconds: two busy cores, Hanami boots in a few seconds
      FIRE_TIMEOUT = 45
      STOP_TIMEOUT = 30

      JOBS_RB = <<~RUBY
        # frozen_string_literal: true

        # The job of the scheduler file: one line per run.
        class FireRecorder
          FILE = File.expand_path("fires.log", __dir__)

          def self.perform(key:, fire:)
            File.open(FILE, "a") { |f| f.write("\#{key} \#{fire} \#{Process.pid}\\n") }
          end
        end

        # What GET /kaal answers: the settings in force in this process.
        module KaalStatus
          def self.line
            c = Kaal.configuration
            "\#{c.backend} \#{c.namespace} tick=\#{c.tick_interval.to_s.delete_suffix(".0")} " \\
              "\#{Kaal.running? ? "running" : "idle"}"
          end
        end
      RUBY

      SCHEDULER_YML = <<~YAML
        defaults:
          jobs:
            - key: "#{JOB_KEY}"
              cron: "* * * * * *"
              job_class: "FireRecorder"
              kwargs:
                key: "{{key}}"
                fire: "{{fire_time.unix}}"
      YAML

      # A scheduler file whose cron cannot parse: the boot must stop.
      BROKEN_SCHEDULER_YML = <<~YAML
        defaults:
          jobs:
            - key: "spec:broken"
              cron: "61 * * * *"
              job_class: "FireRecorder"
      YAML

      # config/kaal.yml: read when present, the options of the app win over it.
      KAAL_YML = <<~YAML
        defaults:
          tick_interval: 1
          namespace: from-kaal-yml
      YAML

      # Ruby source for the backend options of the `kaal` call, and the
      # files it needs required.
      BACKENDS = {
        memory: { requires: [], options: "" },
        redis: { requires: %w[redis], options: 'redis: Redis.new(url: ENV.fetch("KAAL_TEST_REDIS_URL")), ' },
        postgres: { requires: %w[sequel],
                    options: 'database: Sequel.connect(ENV.fetch("KAAL_TEST_POSTGRES_URL")), adapter: "postgres", ' }
      }.freeze
      SERVICE_URLS = { redis: "KAAL_TEST_REDIS_URL", postgres: "KAAL_TEST_POSTGRES_URL" }.freeze

      Fire = Struct.new(:key, :fire, :pid)

      # Why +backend+ cannot be tested here (its server URL is not set), or nil.
      def self.unavailable_reason(backend)
        var = SERVICE_URLS[backend]
        return nil if var.nil? || !ENV[var].to_s.empty?

        "#{var} is not set (run bin/services start and source tmp/services/env)"
      end

      # The arguments of the `kaal` call for +backend+, as Ruby source.
      def self.kaal_args(backend, namespace:, start_scheduler: true)
        "#{BACKENDS.fetch(backend)[:options]}scheduler_config_path: \"config/kaal-scheduler.yml\", " \
          "namespace: #{namespace.inspect}, start_scheduler: #{start_scheduler}"
      end

      # Creates kaal's tables for a SQL backend (what `kaal migrate` does;
      # the embedded scheduler does not create them).
      def self.migrate(backend, namespace)
        return unless backend == :postgres

        handle = Kaal::Backend.build(backend, namespace: namespace, config: { url: ENV.fetch(SERVICE_URLS[backend]) })
        handle.migrate
      ensure
        handle&.close
      end

      def self.requires(backend)
        BACKENDS.fetch(backend)[:requires].map { |lib| "require #{lib.inspect}\n" }.join
      end

      attr_reader :dir, :port, :pid, :status

      # +files+: relative path => content. The job, the scheduler file and
      # config/kaal.yml are added unless +files+ has them.
      def initialize(files)
        @dir = Dir.mktmpdir("kaal-web-")
        defaults = { "jobs.rb" => JOBS_RB, "config/kaal-scheduler.yml" => SCHEDULER_YML, "config/kaal.yml" => KAAL_YML }
        defaults.merge(files).each do |name, text|
          path = File.join(@dir, name)
          FileUtils.mkdir_p(File.dirname(path))
          File.write(path, text)
        end
        @pid = nil
        @status = nil
      end

      def log_path = File.join(@dir, "puma.log")
      def fires_path = File.join(@dir, "fires.log")
      def log = File.exist?(log_path) ? File.read(log_path) : ""

      # Starts Puma and waits until GET / answers 200. workers: 0 is single
      # mode. worker_boot: Ruby source run in each worker as it boots
      # (Puma's before_worker_boot / on_worker_boot). Retries on another port
      # when the one chosen was taken meanwhile.
      # command: a callable taking the port and returning the argv of
      # another server to start instead of Puma (e.g. Sinatra's own).
      def start(workers: 0, preload: false, worker_boot: nil, env: {}, command: nil)
        3.times do
          command ? spawn_command(command, env) : spawn_puma(workers, preload, worker_boot, env)
          wait_until(BOOT_TIMEOUT, "Puma to answer GET / on port #{@port}") do
            raise BootFailed, "Puma exited during boot (#{@status.inspect})\n#{log_tail}" unless alive?

            get("/")&.code == "200"
          end
          return self
        rescue BootFailed
          raise unless log.include?("Address already in use")
        end
        raise BootFailed, "no free port after 3 tries\n#{log_tail}"
      end

      # Starts Puma and waits for it to exit by itself (a boot that must fail).
      # Returns the Process::Status.
      def start_expecting_exit(workers: 0, preload: false, env: {})
        spawn_puma(workers, preload, nil, env)
        wait_until(BOOT_TIMEOUT, "Puma to exit") { !alive? }
        @status
      end

      # GET +path+; nil while nothing listens.
      def get(path)
        Net::HTTP.start("127.0.0.1", @port, open_timeout: 2, read_timeout: 10) { |http| http.get(path) }
      rescue Errno::ECONNREFUSED, Errno::ECONNRESET, EOFError, Net::OpenTimeout, Net::ReadTimeout
        nil
      end

      def fires
        return [] unless File.exist?(fires_path)

        File.readlines(fires_path, chomp: true).map { |line| Fire.new(*line.split(" ", 3)) }
      end

      def fire_times
        fires.map { |f| Integer(f.fire) }.uniq.sort
      end

      # "key fire_time" pairs that ran more than once.
      def duplicates
        fires.map { |f| "#{f.key} #{f.fire}" }.tally.select { |_, n| n > 1 }.keys
      end

      def wait_for_fires(count, timeout: FIRE_TIMEOUT)
        wait_until(timeout, "#{count} distinct fire times in #{fires_path} (have #{fire_times.size})") do
          raise BootFailed, "Puma died (#{@status.inspect})\n#{log_tail}" unless alive?

          fire_times.size >= count
        end
      end

      # Sends TERM (or +signal+) to the server and waits for it to exit.
      # Returns the Process::Status.
      def stop(signal: "TERM")
        return @status unless @pid && alive?

        Process.kill(signal, @pid)
        wait_until(STOP_TIMEOUT, "the server (pid #{@pid}) to exit after #{signal}") { !alive? }
        @status
      end

      # Stops the server if it still runs (KILL when TERM is not enough: its
      # process group, which holds only the Puma started here and its
      # workers) and removes the directory.
      def cleanup
        begin
          stop
        rescue WaitTimeout
          Process.kill("KILL", -@pid)
          Process.wait(@pid)
        end
      rescue Errno::ESRCH, Errno::ECHILD
        nil
      ensure
        FileUtils.rm_rf(@dir)
      end

      def alive?
        return false if @pid.nil? || @status

        done, status = Process.waitpid2(@pid, Process::WNOHANG)
        @status = status if done
        done.nil?
      end

      # The last +lines+ lines of the server's log, without the job's
      # "dispatched" lines (one a second: they would hide the rest).
      def log_tail(lines = 40)
        all = log.lines
        kept = all.reject { |l| l.include?(" dispatched in ") }
        "--- #{log_path} (last #{lines} lines; #{all.size - kept.size} dispatch lines left out) ---\n" \
          "#{kept.last(lines).join}"
      end

      def wait_until(timeout, what)
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
        loop do
          return true if yield
          if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
            raise WaitTimeout, "timed out after #{timeout}s waiting for #{what}\n#{log_tail}"
          end

          sleep 0.1
        end
      end

      class WaitTimeout < StandardError; end
      class BootFailed < StandardError; end

      private

      def spawn_puma(workers, preload, worker_boot, env)
        @port = free_port
        File.write(File.join(@dir, "config", "puma.rb"), puma_config(workers, preload, worker_boot))
        @status = nil
        @pid = Process.spawn(
          { "RACK_ENV" => "production" }.merge(env),
          RbConfig.ruby, Gem.bin_path("puma", "puma"), "-C", "config/puma.rb", "config.ru",
          chdir: @dir, in: File::NULL, out: [log_path, "a"], err: [log_path, "a"], pgroup: true
        )
      end

      def spawn_command(command, env)
        @port = free_port
        @status = nil
        @pid = Process.spawn({ "RACK_ENV" => "production" }.merge(env), *command.call(@port),
                             chdir: @dir, in: File::NULL, out: [log_path, "a"], err: [log_path, "a"], pgroup: true)
      end

      def puma_config(workers, preload, worker_boot)
        lines = ["bind \"tcp://127.0.0.1:#{@port}\"", "threads 1, 4", "workers #{workers}",
                 "raise_exception_on_sigterm false"] # TERM: a graceful stop with exit status 0
        lines << "preload_app! #{preload}" if workers.positive? # Puma 7+ preloads by default
        lines << "worker_timeout 120" if workers.positive?
        if worker_boot
          lines << "(respond_to?(:before_worker_boot) ? method(:before_worker_boot) : method(:on_worker_boot)).call do"
          lines << "  #{worker_boot}"
          lines << "end"
        end
        "#{lines.join("\n")}\n"
      end

      def free_port
        server = TCPServer.new("127.0.0.1", 0)
        server.addr[1]
      ensure
        server&.close
      end
    end
  end
end

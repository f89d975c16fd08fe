# frozen_string_literal: true

require "securerandom"
require "tmpdir"
require "fileutils"

# Helpers for backend specs: real servers from KAAL_TEST_*_URL, handle
# factories for the shared examples ("a kaal backend", see
# spec/support/backend_examples.rb) and a GVL check.
#
# In an example group:
#
#   kaal_backend_for :redis        # or :postgres, :mysql, :sqlite, :memory
#
# skips the group when the backend was not compiled in or its server URL is
# not set, and fails instead when KAAL_REQUIRE_SERVICES=1 (bin/test sets it).
# It defines `backend_factory` (namespace -> fresh, migrated handle; for
# server backends each call is a new connection, i.e. another node),
# `separate_handles` and `kaal_backend_url`, and closes every handle after
# each example.
module KaalBackendSpec
  SERVICE_URLS = {
    redis: "KAAL_TEST_REDIS_URL",
    postgres: "KAAL_TEST_POSTGRES_URL",
    mysql: "KAAL_TEST_MYSQL_URL"
  }.freeze

  module_function

  def require_services?
    ENV["KAAL_REQUIRE_SERVICES"] == "1"
  end

  # The reason a backend cannot be tested here, or nil.
  def unavailable_reason(kind)
    kind = kind.to_sym
    unless Kaal::Native.backends.include?(kind.to_s)
      return "the #{kind} backend is not compiled into this build (Kaal::Native.backends: " \
             "#{Kaal::Native.backends.join(", ")})"
    end
    var = SERVICE_URLS[kind]
    return "#{var} is not set (start one with bin/services start #{kind})" if var && ENV[var].to_s.empty?

    nil
  end

  def service_url(kind)
    var = SERVICE_URLS[kind.to_sym]
    var ? ENV[var] : nil
  end

  # A namespace no other example (or worker) uses.
  def unique_namespace(prefix = "spec")
    "#{prefix}-#{Process.pid}-#{SecureRandom.hex(6)}"
  end

  # Builds a handle (not migrated) for kind with the test configuration.
  def build(kind, namespace, sqlite_path: nil, config: {})
    config =
      case kind.to_sym
      when :memory then {}
      when :sqlite then { path: sqlite_path }.merge(config)
      else { url: service_url(kind) }.merge(config)
      end
    Kaal::Backend.build(kind, namespace: namespace, config: config)
  end

  # Asserts that the block, while it waits (it should take at least ~0.2 s),
  # does not hold the GVL: a second Ruby thread must keep running during the
  # call. The ticker thread records a timestamp every `interval` seconds; a
  # C call holding the GVL would leave no timestamps inside its window.
  # Returns the block's value.
  #
  #   result = expect_progress_while { backend.claim(pairs, ...) }   # while the server sleeps
  #
  # Ways to make a server slow from another connection: Redis
  # `CLIENT PAUSE 500` (DEBUG SLEEP is disabled by default since Redis 7),
  # PostgreSQL `SELECT pg_sleep(0.5)` holding a row lock, MySQL `SELECT SLEEP(0.5)`
  # inside a transaction holding a lock.
  def expect_progress_while(min_ticks: 5, interval: 0.005)
    clock = -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) }
    ticks = []
    stop = false
    ticker = Thread.new do
      until stop
        ticks << clock.call
        sleep interval
      end
    end
    sleep interval * 4 until ticks.size >= 2
    t0 = clock.call
    result = yield
    t1 = clock.call
    stop = true
    ticker.join
    # Ignore the edges: a tick may land just after entry or just before return.
    margin = (t1 - t0) * 0.1
    inside = ticks.count { |t| t > t0 + margin && t < t1 - margin }
    RSpec::Expectations.fail_with(
      "expected another Ruby thread to keep running while the call waited " \
      "(#{format("%.3f", t1 - t0)} s), but it ran only #{inside} time(s) " \
      "(wanted >= #{min_ticks}): the call holds the GVL"
    ) if inside < min_ticks
    result
  end

  # Example group methods (RSpec `extend`).
  module GroupMethods
    # Gives each example @path: a SQLite file name (name) in a fresh
    # temporary directory (prefix), removed after the example.
    def temp_sqlite_file(prefix, name = "kaal.sqlite3")
      around do |example|
        Dir.mktmpdir(prefix) do |dir|
          @path = File.join(dir, name)
          example.run
        end
      end
    end

    # Sets up the group for one backend kind; see the top of this file.
    def kaal_backend_for(kind)
      kind = kind.to_sym
      metadata[:kaal_backend] = kind

      before { skip_unavailable(KaalBackendSpec.unavailable_reason(kind)) }

      after do
        @kaal_backend_handles&.each do |b|
          b.close
        rescue StandardError
          nil
        end
        FileUtils.rm_rf(@kaal_sqlite_dir) if @kaal_sqlite_dir
      end

      let(:kaal_backend_kind) { kind }
      let(:kaal_backend_url) { KaalBackendSpec.service_url(kind) }
      # Memory: one store per handle, so "another node" is the same handle.
      let(:separate_handles) { kind != :memory }
      let(:backend_factory) do
        cache = {}
        lambda do |namespace|
          next cache[namespace] if kind == :memory && cache[namespace]

          @kaal_sqlite_dir ||= Dir.mktmpdir("kaal-spec-") if kind == :sqlite
          sqlite_path = @kaal_sqlite_dir && File.join(@kaal_sqlite_dir, "kaal.sqlite3")
          handle = KaalBackendSpec.build(kind, namespace, sqlite_path: sqlite_path)
          handle.migrate
          (@kaal_backend_handles ||= []) << handle
          cache[namespace] = handle
        end
      end
    end
  end

  # Example methods (RSpec `include`).
  module ExampleMethods
    # Skips the example (in before(:all): the group) for reason, or fails
    # under KAAL_REQUIRE_SERVICES=1; nothing when reason is nil.
    def skip_unavailable(reason)
      return unless reason
      raise "#{reason} (KAAL_REQUIRE_SERVICES=1)" if KaalBackendSpec.require_services?

      skip reason
    end

    # Monotonic wall-clock seconds, and this process's CPU seconds.
    def mono = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    def cpu = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)

    # Runs the block, which must raise `error`; returns [wall seconds, CPU
    # seconds] (the interrupt specs: a wait ends soon, without spinning).
    def measure(error)
      t0 = mono
      c0 = cpu
      expect { yield }.to raise_error(error)
      [mono - t0, cpu - c0]
    end

    def expect_progress_while(**opts, &block)
      KaalBackendSpec.expect_progress_while(**opts, &block)
    end

    def unique_namespace(prefix = "spec")
      KaalBackendSpec.unique_namespace(prefix)
    end

    # Runs the block in a forked child and returns what it returned, as a
    # String (the child writes it to a pipe), or "Class: message" when it raised.
    #
    #   expect(in_fork { backend.claim(...).inspect }).to eq("[true]")
    def in_fork
      reader, writer = IO.pipe
      pid = fork do
        reader.close
        result =
          begin
            yield.to_s
          rescue Exception => e # rubocop:disable Lint/RescueException -- report anything, then exit!
            "#{e.class}: #{e.message}"
          end
        writer.write(result)
        writer.close
        exit!(0)
      end
      writer.close
      Process.wait(pid)
      reader.read
    ensure
      reader&.close
    end
  end
end

RSpec.configure do |config|
  config.extend KaalBackendSpec::GroupMethods
  config.include KaalBackendSpec::ExampleMethods
end

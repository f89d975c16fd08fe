# frozen_string_literal: true

require "fileutils"
require "securerandom"
require "socket"
require "tmpdir"

module Kaal
  module Spec
    # A private, throw-away redis-server for specs that must stop, kill or
    # pause the server (reconnect, GVL). Listens on 127.0.0.1 on a free port,
    # keeps no data on disk, and is stopped by the pid it was started with.
    #
    #   server = Kaal::Spec::RedisServer.start
    #   server.url          # => "redis://127.0.0.1:PORT/0"
    #   server.kill         # SIGKILL, wait
    #   server.start        # again, same port
    #   server.stop         # TERM, wait, remove its directory
    class RedisServer
      BIN = "redis-server"

      def self.available?
        system("command -v #{BIN} >/dev/null 2>&1")
      end

      # Why a spec cannot run its own redis-server (with tls: over TLS,
      # spec/support/redis_tls.rb) here, or nil.
      def self.unavailable_reason(tls: false)
        if !Kaal::Native.backends.include?("redis") then "the redis backend is not compiled into this build"
        elsif tls && !Kaal::Native::REDIS_TLS then "this build has no TLS (libssl-dev missing)"
        elsif !available? then "redis-server is not installed"
        elsif tls && !TlsFiles.available? then "the openssl command is not installed"
        end
      end

      # extra: more redis-server arguments, e.g. ["--requirepass", "s3cret"].
      def self.start(*extra)
        new(*extra).tap(&:start)
      end

      attr_reader :port, :pid, :dir

      def initialize(*extra)
        @dir = Dir.mktmpdir("kaal-redis-")
        @port = free_port
        @extra = extra
        @pid = nil
      end

      def socket_path
        File.join(@dir, "redis.sock")
      end

      def url(db = 0)
        "redis://127.0.0.1:#{port}/#{db}"
      end

      def start
        raise "already running (pid #{@pid})" if @pid

        @pid = Process.spawn(
          BIN, "--bind", "127.0.0.1", *listen_args, "--dir", @dir, "--save", "",
          "--appendonly", "no", "--daemonize", "no", "--logfile", File.join(@dir, "redis.log"),
          "--unixsocket", socket_path, *@extra,
          in: File::NULL, out: File::NULL, err: File::NULL
        )
        wait_until_up
        self
      end

      def kill
        signal_and_wait("KILL")
      end

      def stop
        signal_and_wait("TERM")
        FileUtils.rm_rf(@dir)
      end

      # Send commands on one fresh connection; returns the first line of the
      # last reply. Each command is an Array: command(%w[AUTH pw], %w[PING]).
      def command(*args)
        cmds = args.first.is_a?(Array) ? args : [args]
        open_socket do |s|
          cmds.map do |c|
            s.write("*#{c.size}\r\n" + c.map { |a| "$#{a.to_s.bytesize}\r\n#{a}\r\n" }.join)
            s.gets
          end.last
        end
      end

      private

      # The redis-server arguments that say where it listens.
      def listen_args
        ["--port", port.to_s]
      end

      def open_socket(&block)
        TCPSocket.open("127.0.0.1", port, &block)
      end

      def signal_and_wait(sig)
        return unless @pid

        begin
          Process.kill(sig, @pid)
          Process.wait(@pid)
        rescue Errno::ESRCH, Errno::ECHILD
          nil
        end
        @pid = nil
      end

      def wait_until_up
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
        loop do
          begin
            return if command("PING")&.match?(/\A(\+PONG|-NOAUTH)/)
          rescue SystemCallError
            nil
          end
          if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
            log = File.join(@dir, "redis.log")
            tail = File.exist?(log) ? File.read(log).lines.last(5).join : "no log"
            raise "redis-server on port #{port} did not start:\n#{tail}"
          end
          sleep 0.05
        end
      end

      def free_port
        s = TCPServer.new("127.0.0.1", 0)
        s.addr[1]
      ensure
        s&.close
      end
    end

    # Example group methods (RSpec `extend`) for specs that need their own
    # redis-server:
    #
    #   private_redis_server                                  # server, started once for the group
    #   private_redis_server("--requirepass", pw) { |s| ... } # more arguments; the block runs after the start
    module PrivateRedisServer
      # Skips the group when the redis backend is not built or redis-server is
      # not installed (fails instead under KAAL_REQUIRE_SERVICES=1); otherwise
      # starts the server before the group's examples and stops it after them.
      def private_redis_server(*extra, &after_start)
        before(:all) do
          skip_unavailable(RedisServer.unavailable_reason)
          @server = RedisServer.start(*extra)
          after_start&.call(@server)
        end

        after(:all) { @server&.stop }

        let(:server) { @server }
      end

      # let(:backend): a handle on the private server in a fresh namespace
      # (prefix-<hex>), with more config (say, timeout:); closed after each example.
      def private_redis_backend(prefix, **config)
        let(:backend) do
          Kaal::Backend.build(:redis, namespace: "#{prefix}-#{SecureRandom.hex(4)}",
                                      config: { url: server.url, **config })
        end

        after { backend.close }
      end
    end
  end
end

RSpec.configure { |config| config.extend Kaal::Spec::PrivateRedisServer }

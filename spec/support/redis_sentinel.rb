# frozen_string_literal: true

require "fileutils"
require "redis"
require "tmpdir"
require_relative "redis_server"

module Kaal
  module Spec
    # A redis-server in Sentinel mode (redis-server CONF --sentinel) watching
    # one master; its config file is private and writable (Sentinel rewrites it).
    class SentinelServer < RedisServer
      def initialize(master_name, master_port)
        super()
        @master_name = master_name
        @master_port = master_port
      end

      def start
        raise "already running (pid #{@pid})" if @pid

        conf = File.join(@dir, "sentinel.conf")
        File.write(conf, <<~CONF)
          port #{port}
          bind 127.0.0.1
          dir #{@dir}
          logfile #{File.join(@dir, "sentinel.log")}
          sentinel monitor #{@master_name} 127.0.0.1 #{@master_port} 2
          sentinel down-after-milliseconds #{@master_name} 2000
          sentinel failover-timeout #{@master_name} 10000
        CONF
        @pid = Process.spawn(BIN, conf, "--sentinel", in: File::NULL, out: File::NULL, err: File::NULL)
        send(:wait_until_up)
        self
      end

      def client
        @client ||= Redis.new(host: "127.0.0.1", port: port, timeout: 2)
      end

      def stop
        @client&.close
        super
      end
    end

    # One master, one replica and three sentinels, all on 127.0.0.1:
    #
    #   setup = Kaal::Spec::RedisSentinelSetup.start
    #   setup.backend_config   # => { sentinels: [...], name: "kaal-master" }
    #   setup.failover!        # SENTINEL FAILOVER; returns when a new master serves writes
    #   setup.master_port
    #   setup.stop
    class RedisSentinelSetup
      NAME = "kaal-master"

      attr_reader :servers, :sentinels

      def self.start
        new.tap(&:start)
      end

      def initialize
        @servers = []
        @sentinels = []
      end

      def start
        @servers << RedisServer.start
        @servers << RedisServer.start("--replicaof", "127.0.0.1", @servers[0].port.to_s)
        @sentinels = Array.new(3) { SentinelServer.new(NAME, @servers[0].port).start }
        wait_for("the replica to be in sync") { in_sync?(master_port) }
        wait_for("every sentinel to know the replica and the other sentinels") { sentinels.all? { |s| ready?(s) } }
        self
      rescue StandardError
        stop
        raise
      end

      def backend_config
        { "sentinels" => sentinels.map { |s| "127.0.0.1:#{s.port}" }, "name" => NAME }
      end

      # The master's port as the first sentinel reports it.
      def master_port
        Integer(sentinels.first.client.call("SENTINEL", "get-master-addr-by-name", NAME).last)
      end

      # Asks a sentinel to fail over, then waits until every sentinel names
      # the new master, it answers ROLE master, and the old master follows it.
      def failover!
        old = master_port
        sentinels.first.client.call("SENTINEL", "FAILOVER", NAME)
        wait_for("a new master", 30) do
          ports = sentinels.map { |s| Integer(s.client.call("SENTINEL", "get-master-addr-by-name", NAME).last) }
          ports.uniq.size == 1 && ports.first != old && role(ports.first) == "master"
        end
        new = master_port
        # Sentinel turns the old master into a replica at its next check of
        # it (up to 10 s); tell it at once, as Sentinel will, to keep the run short.
        with(old) { |r| r.call("REPLICAOF", "127.0.0.1", new.to_s) } unless quick_sync?(new)
        wait_for("the old master to replicate the new one", 30) { in_sync?(new) }
        [old, new]
      end

      def role(port)
        with(port) { |r| r.call("ROLE").first }
      rescue StandardError
        nil
      end

      def stop
        (@sentinels + @servers).each do |s|
          s.stop
        rescue StandardError
          nil
        end
      end

      private

      def with(port)
        r = Redis.new(host: "127.0.0.1", port: port, timeout: 2)
        yield r
      ensure
        r&.close
      end

      def quick_sync?(port)
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 2
        sleep 0.1 until in_sync?(port) || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
        in_sync?(port)
      end

      # The master at port has a replica whose link is up.
      def in_sync?(port)
        with(port) do |r|
          info = r.call("INFO", "replication")
          info.include?("role:master") && info.match?(/slave0:.*state=online/)
        end
      rescue StandardError
        false
      end

      def ready?(sentinel)
        master = sentinel.client.call("SENTINEL", "master", NAME)
        fields = master.is_a?(Hash) ? master : Hash[*master]
        fields["num-slaves"].to_i >= 1 && fields["num-other-sentinels"].to_i >= 2
      rescue StandardError
        false
      end

      def wait_for(what, seconds = 30)
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
        until yield
          raise "sentinel setup: timed out waiting for #{what}" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

          sleep 0.1
        end
      end
    end
  end
end

# frozen_string_literal: true

require "fileutils"
require "redis"
require "tmpdir"
require_relative "redis_server"
require_relative "redis_tls"

module Kaal
  module Spec
    # A redis-server in Sentinel mode (redis-server CONF --sentinel) watching
    # one master; its config file is private and writable (Sentinel rewrites
    # it). With files (a TlsFiles) it speaks only TLS, to clients and servers.
    class SentinelServer < RedisTlsServer
      def initialize(master_name, master_port, files = nil)
        super(files)
        @master_name = master_name
        @master_port = master_port
      end

      def start
        raise "already running (pid #{@pid})" if @pid

        conf = File.join(@dir, "sentinel.conf")
        File.write(conf, <<~CONF + tls_conf)
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
        @client ||= Redis.new(host: "127.0.0.1", port: port, timeout: 2, **RedisSentinelSetup.tls_options(files))
      end

      def stop
        @client&.close
        super
      end

      private

      def tls_conf
        return "port #{port}\n" unless files

        "port 0\ntls-port #{port}\ntls-cert-file #{files.server_cert}\ntls-key-file #{files.server_key}\n" \
          "tls-ca-cert-file #{files.ca}\ntls-auth-clients optional\ntls-replication yes\n"
      end
    end

    # One master, one replica and three sentinels, all on 127.0.0.1 (with
    # tls: a TlsFiles, all of them speak only TLS):
    #
    #   setup = Kaal::Spec::RedisSentinelSetup.start
    #   setup.backend_config   # => { sentinels: [...], name: "kaal-master" }
    #   setup.failover!        # SENTINEL FAILOVER; returns when a new master serves writes
    #   setup.master_port
    #   setup.stop
    class RedisSentinelSetup
      NAME = "kaal-master"

      attr_reader :servers, :sentinels

      def self.start(tls: nil)
        new(tls: tls).tap(&:start)
      end

      # redis-rb options for a TLS server with the CA of files (nil: none).
      def self.tls_options(files)
        files ? { ssl: true, ssl_params: { ca_file: files.ca } } : {}
      end

      def initialize(tls: nil)
        @tls = tls
        @servers = []
        @sentinels = []
      end

      def start
        repl = @tls ? %w[--tls-replication yes] : []
        @servers << RedisTlsServer.start(@tls, *repl)
        @servers << RedisTlsServer.start(@tls, *repl, "--replicaof", "127.0.0.1", @servers[0].port.to_s)
        @sentinels = Array.new(3) { SentinelServer.new(NAME, @servers[0].port, @tls).start }
        wait_for("the replica to be in sync") { in_sync?(master_port) }
        wait_for("every sentinel to know the replica and the other sentinels") { sentinels.all? { |s| ready?(s) } }
        self
      rescue StandardError
        stop
        raise
      end

      def backend_config
        tls = @tls ? { "ssl" => true, "ssl_params" => { "ca_file" => @tls.ca } } : {}
        { "sentinels" => sentinels.map { |s| "127.0.0.1:#{s.port}" }, "name" => NAME }.merge(tls)
      end

      # A redis-rb client of the server on port.
      def redis(port)
        Redis.new(host: "127.0.0.1", port: port, timeout: 2, **self.class.tls_options(@tls))
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
        r = redis(port)
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

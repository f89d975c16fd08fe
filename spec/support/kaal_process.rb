# frozen_string_literal: true

require "fileutils"
require "json"
require "net/http"
require "rbconfig"
require "securerandom"
require "socket"
require "tmpdir"
require "yaml"

module Kaal
  module Spec
    # One real `kaal start` process in a directory of its own, for specs of
    # the operational surface (--http, NOTIFY_SOCKET, JSON logs).
    #
    #   node = Kaal::Spec::KaalProcess.new(backend: "memory", jobs_rb: "...", jobs: [...])
    #   node.start("--http", "127.0.0.1:#{port}", env: { "NOTIFY_SOCKET" => path })
    #   node.log       # stdout + stderr so far
    #   node.stop      # TERM, wait; returns the exit status
    class KaalProcess
      BIN = File.expand_path("../../bin/kaal", __dir__)
      LIB = File.expand_path("../../lib", __dir__)

      attr_reader :dir, :pid, :namespace

      def self.free_port
        s = TCPServer.new("127.0.0.1", 0)
        s.addr[1]
      ensure
        s&.close
      end

      # GET (or another method) on 127.0.0.1:port; [status Integer, body, headers Hash].
      def self.http(port, path, method: "GET")
        Net::HTTP.start("127.0.0.1", port, open_timeout: 2, read_timeout: 5) do |h|
          res = h.send_request(method, path)
          [res.code.to_i, res.body.to_s, res.to_hash]
        end
      end

      def initialize(backend: "memory", backend_config: {}, jobs: [], jobs_rb: "", settings: {})
        @dir = Dir.mktmpdir("kaal-proc-")
        @namespace = "obs-#{SecureRandom.hex(4)}"
        FileUtils.mkdir_p(File.join(@dir, "config"))
        config = { "backend" => backend, "backend_config" => backend_config, "namespace" => @namespace,
                   "tick_interval" => 1, "scheduler_config_path" => "config/kaal-scheduler.yml" }.merge(settings)
        File.write(File.join(@dir, "config", "kaal.yml"), YAML.dump("defaults" => config))
        File.write(File.join(@dir, "config", "kaal-scheduler.yml"), YAML.dump("defaults" => { "jobs" => jobs }))
        File.write(File.join(@dir, "jobs.rb"), jobs_rb)
        @log_path = File.join(@dir, "kaal.log")
        @pid = nil
      end

      def path(name)
        File.join(@dir, name)
      end

      def start(*args, env: {})
        @pid = Process.spawn({ "KAAL_ENV" => nil, "RAILS_ENV" => nil, "RACK_ENV" => nil }.merge(env),
                             RbConfig.ruby, "-I", LIB, BIN, "start", "--require", "./jobs.rb", *args,
                             chdir: @dir, out: @log_path, err: [:child, :out], in: File::NULL)
        self
      end

      # Runs another kaal command in the same directory: [stdout, stderr, status].
      def command(*args, env: {})
        require "open3"
        out, err, status = Open3.capture3({ "KAAL_ENV" => nil }.merge(env), RbConfig.ruby, "-I", LIB, BIN, *args,
                                          chdir: @dir)
        [out, err, status.exitstatus]
      end

      def log
        File.exist?(@log_path) ? File.read(@log_path) : ""
      end

      def alive?
        return false unless @pid

        Process.waitpid(@pid, Process::WNOHANG).nil?
      rescue Errno::ECHILD
        false
      end

      # TERM, then waits up to +timeout+ seconds (KILL after). Returns the exit status.
      def stop(timeout: 30)
        return nil unless @pid

        pid = @pid
        @pid = nil
        begin
          Process.kill("TERM", pid)
        rescue Errno::ESRCH
          nil
        end
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
        loop do
          _, status = Process.waitpid2(pid, Process::WNOHANG)
          return status.exitstatus if status
          break if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

          sleep 0.05
        end
        Process.kill("KILL", pid)
        Process.wait(pid)
        nil
      rescue Errno::ECHILD, Errno::ESRCH
        nil
      end

      def cleanup
        stop
        FileUtils.rm_rf(@dir)
      end
    end
  end
end

# frozen_string_literal: true

require "etc"
require "fileutils"
require "open3"
require "socket"

module Kaal
  module Chaos
    # A private Redis, PostgreSQL or MariaDB server for one chaos run, started
    # by bin/services in its own KAAL_SERVICES_DIR, which can be crashed and
    # started again on the SAME port and data directory (bin/services start
    # would pick a new port). It uses bin/services' layout: <dir>/<name>.port,
    # <dir>/<name>.pid, <dir>/<name>.log, the data in <dir>/redis, PostgreSQL's in the directory
    # named by <dir>/postgres.dir,
    # <dir>/mysql.
    #
    # Before the run the server is made durable (an acknowledged write
    # survives a crash of the server process): Redis appendonly with
    # appendfsync always, PostgreSQL synchronous_commit on for the test
    # database, InnoDB flushing its log at every commit. The outage is then a
    # crash, not a clean shutdown: Redis and MariaDB get SIGKILL, PostgreSQL
    # SIGQUIT (immediate shutdown: no checkpoint, crash recovery at restart).
    class Server
      ROOT = File.expand_path("../..", __dir__)
      SERVICES = File.join(ROOT, "bin", "services")
      PG_BIN = Dir["/usr/lib/postgresql/*/bin"].max_by { |d| d[%r{/(\d+)/bin\z}, 1].to_i }

      attr_reader :kind, :dir, :url, :port

      def self.available?(kind)
        case kind
        when "redis" then system("command -v redis-server >/dev/null 2>&1")
        when "postgres" then !PG_BIN.nil? && File.executable?(File.join(PG_BIN, "pg_ctl"))
        when "mysql" then system("command -v mariadbd >/dev/null 2>&1")
        else false
        end
      end

      # durable: false (Redis only) keeps bin/services' Redis without
      # persistence, so a crash loses every claim: the broken assumption of
      # docs/guarantee.md, for showing what it costs. tls (Redis only): a
      # TlsFiles; the server then speaks only TLS, started here in bin/services'
      # layout rather than by bin/services (which has no TLS).
      def initialize(kind, dir, durable: true, tls: nil)
        @kind = kind
        @dir = dir
        @durable = durable
        @tls = tls
        @log = []
      end

      def name
        { "redis" => "redis", "postgres" => "postgres", "mysql" => "mysql" }.fetch(@kind)
      end

      def start
        FileUtils.mkdir_p(@dir)
        return start_tls_redis if @tls

        out, status = Open3.capture2e({ "KAAL_SERVICES_DIR" => @dir }, SERVICES, "start", name)
        raise "bin/services start #{name} failed:\n#{out}" unless status.success?

        line = File.readlines(File.join(@dir, "env")).grep(/KAAL_TEST_\w+_URL=/).last
        @url = line[/=(\S+)/, 1]
        @port = Integer(File.read(File.join(@dir, "#{name}.port")).strip)
        make_durable if @durable
        self
      end

      # Crash the server process (see the class comment). Returns its pid.
      def crash
        pid = server_pid
        raise "#{name}: no running server (pid file #{pid_file})" unless pid && alive?(pid)

        Process.kill(@kind == "postgres" ? "QUIT" : "KILL", pid)
        wait_gone(pid, 30) || (Process.kill("KILL", pid) && wait_gone(pid, 10))
        pid
      end

      # Starts the server again on the same port and data directory; returns
      # when it answers.
      def restart
        case @kind
        when "redis" then restart_redis
        when "postgres" then restart_postgres
        when "mysql" then restart_mysql
        end
        wait_ready(60) || raise("#{name} did not come back on port #{@port}; see #{File.join(@dir, "#{name}.log")}")
        self
      end

      def ready?
        _, status = Open3.capture2e(*ping_command)
        status.success?
      rescue SystemCallError
        false
      end

      def stop
        out, status = Open3.capture2e({ "KAAL_SERVICES_DIR" => @dir }, SERVICES, "stop")
        warn "chaos: bin/services stop: #{out}" unless status.success?
      end

      # The server's process id (PostgreSQL: the postmaster), nil when not running.
      def pid
        server_pid
      end

      private

      def pid_file
        File.join(@dir, "#{name}.pid")
      end

      def server_pid
        path = @kind == "postgres" ? File.join(pg_dir, "data", "postmaster.pid") : pid_file
        path = pid_file if @kind == "postgres" && !File.exist?(path)
        Integer(File.read(path).lines.first.to_s.strip, exception: false)
      rescue Errno::ENOENT
        nil
      end

      def alive?(pid)
        Process.kill(0, pid)
        true
      rescue Errno::ESRCH
        false
      rescue Errno::EPERM
        true
      end

      def wait_gone(pid, seconds)
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
        while Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline
          return true unless alive?(pid)

          sleep 0.05
        end
        false
      end

      def wait_ready(seconds)
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
        while Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline
          return true if ready?

          sleep 0.2
        end
        false
      end

      def ping_command
        case @kind
        when "redis" then [*redis_cli, "ping"]
        when "postgres" then [File.join(PG_BIN, "pg_isready"), "-h", "127.0.0.1", "-p", @port.to_s]
        when "mysql" then ["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", @port.to_s, "-u", "root", "-e", "SELECT 1"]
        end
      end

      def sh!(*cmd)
        # From /: the postgres user may not enter the current directory (a checkout in a 0700 home).
        out, status = Open3.capture2e(*cmd, chdir: "/")
        raise "#{cmd.join(" ")} failed: #{out}" unless status.success?

        out
      end

      def root?
        Process.uid.zero?
      end

      def as_pg(*cmd)
        root? ? ["runuser", "-u", "postgres", "--", *cmd] : cmd
      end

      def make_durable
        case @kind
        when "redis"
          cli = redis_cli
          sh!(*cli, "CONFIG", "SET", "appendfsync", "always")
          sh!(*cli, "CONFIG", "SET", "appendonly", "yes")
          # the first rewrite must finish, or a crash leaves no usable AOF
          100.times do
            info = sh!(*cli, "INFO", "persistence")
            break if info =~ /aof_enabled:1/ && info =~ /aof_rewrite_in_progress:0/ &&
                     info !~ /aof_rewrite_scheduled:1/
            sleep 0.1
          end
        when "postgres"
          sh!(*as_pg(File.join(PG_BIN, "psql"), "-h", "127.0.0.1", "-p", @port.to_s, "-U", "postgres", "-qc",
                     "ALTER DATABASE kaal_test SET synchronous_commit = on"))
        when "mysql"
          sh!("mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", @port.to_s, "-u", "root",
              "-e", "SET GLOBAL innodb_flush_log_at_trx_commit = 1")
        end
      end

      def redis_cli
        ["redis-cli", "-h", "127.0.0.1", "-p", @port.to_s, *(@tls ? ["--tls", "--cacert", @tls.ca] : [])]
      end

      def start_tls_redis
        @port = TCPServer.open("127.0.0.1", 0) { |s| s.addr[1] }
        FileUtils.mkdir_p(File.join(@dir, "redis"))
        File.write(File.join(@dir, "redis.port"), "#{@port}\n")
        restart_redis
        wait_ready(60) || raise("redis (TLS) did not start on port #{@port}; see #{File.join(@dir, "redis.log")}")
        @url = "rediss://127.0.0.1:#{@port}/0"
        make_durable if @durable
        self
      end

      def redis_listen_args
        return ["--port", @port.to_s] unless @tls

        ["--port", "0", "--tls-port", @port.to_s, "--tls-cert-file", @tls.server_cert, "--tls-key-file",
         @tls.server_key, "--tls-ca-cert-file", @tls.ca, "--tls-auth-clients", "no"]
      end

      # Same command line as bin/services, plus the durable settings (and TLS).
      def restart_redis
        sh!("redis-server", "--bind", "127.0.0.1", *redis_listen_args, "--dir", File.join(@dir, "redis"),
            "--save", "", *(@durable ? %w[--appendonly yes --appendfsync always] : %w[--appendonly no]), "--daemonize", "yes",
            "--pidfile", pid_file, "--logfile", File.join(@dir, "redis.log"))
      end

      # bin/services keeps PostgreSQL's data, socket and log in a private
      # directory outside the services directory (the postgres user may not
      # enter it); its path is in <dir>/postgres.dir.
      def pg_dir
        File.read(File.join(@dir, "postgres.dir")).strip
      rescue Errno::ENOENT
        File.join(@dir, "pg-missing")
      end

      def restart_postgres
        data = File.join(pg_dir, "data")
        opts = "-c listen_addresses=127.0.0.1 -p #{@port} -k #{pg_dir} -c fsync=off -c synchronous_commit=off " \
               "-c full_page_writes=off -c max_connections=200"
        sh!(*as_pg(File.join(PG_BIN, "pg_ctl"), "-D", data, "-l", File.join(pg_dir, "postgres.log"), "-w", "-t", "60",
                   "-o", opts, "start"))
        File.write(pid_file, "#{File.read(File.join(data, "postmaster.pid")).lines.first.strip}\n")
      end

      def restart_mysql
        user = Etc.getpwuid(Process.uid).name
        FileUtils.rm_f(File.join(@dir, "mysql.sock"))
        pid = Process.spawn("mariadbd", "--no-defaults", "--user=#{user}", "--datadir=#{File.join(@dir, "mysql")}",
                            "--bind-address=127.0.0.1", "--port=#{@port}", "--socket=#{File.join(@dir, "mysql.sock")}",
                            "--pid-file=#{pid_file}", "--skip-name-resolve", "--innodb-flush-log-at-trx-commit=1",
                            "--innodb-buffer-pool-size=64M", "--max-connections=300",
                            "--log-error=#{File.join(@dir, "mysql.log")}",
                            in: File::NULL, out: File::NULL, err: File::NULL, pgroup: true)
        Process.detach(pid)
      end
    end
  end
end

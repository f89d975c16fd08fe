# frozen_string_literal: true

require "bundler"
require "fileutils"
require "json"
require "open3"
require "securerandom"
require "timeout"
require "tmpdir"
require "uri"

# One Rails app generated per spec run (`rails new --minimal`, kaal and
# kaal-rails from this checkout by path), bundled from the gems the top
# Gemfile installed (`bundle install --local`: nothing is downloaded), and
# reused by every example. KAAL_KEEP_APP=1 keeps the directory for a look.
module GeneratedApp
  REPO = File.expand_path("../../..", __dir__)
  FIXTURES = File.expand_path("../fixtures/app", __dir__)
  RAILS_FLAGS = %w[--minimal --skip-git --skip-bundle --skip-asset-pipeline --skip-javascript --skip-test
                   --skip-docker --quiet].freeze

  Result = Struct.new(:out, :err, :status) do
    def success? = status.success?
    def output = "#{out}#{err}"
  end

  class << self
    # The app's root, generated on first use.
    def root
      @root ||= build
    end

    # Runs the generator unless it ran (the examples after the generator's
    # own need its files; the fixture's scheduler file is kept).
    def install!
      run!("bin/rails", "generate", "kaal:install") unless File.exist?(path("config/kaal.yml"))
    end

    # Runs cmd (an Array) in the app with its own bundle; returns a Result.
    def run(*cmd, env: {}, timeout: 120)
      Bundler.with_unbundled_env do
        out_r, out_w = IO.pipe
        err_r, err_w = IO.pipe
        pid = Process.spawn(app_env.merge(env), *cmd, chdir: root, out: out_w, err: err_w, pgroup: true)
        out_w.close
        err_w.close
        readers = [Thread.new { out_r.read }, Thread.new { err_r.read }]
        status = wait_pid(pid, timeout) || raise("#{cmd.join(" ")}: no exit within #{timeout}s")
        Result.new(readers[0].value, readers[1].value, status)
      ensure
        [out_r, err_r].each { |io| io&.close unless io&.closed? }
      end
    end

    # run, failing with the output unless the command succeeds.
    def run!(*cmd, **opts)
      result = run(*cmd, **opts)
      raise "#{cmd.join(" ")} failed (#{result.status}):\n#{result.output}" unless result.success?

      result
    end

    # Starts a long-running command in the app (its own process group),
    # output to log. Returns the pid.
    def spawn(*cmd, log:, env: {})
      Bundler.with_unbundled_env do
        Process.spawn(app_env.merge(env), *cmd, chdir: root, out: log, err: %i[child out], pgroup: true)
      end
    end

    # TERM, then the exit status (KILL of the group after timeout).
    def stop(pid, timeout: 30)
      Process.kill("TERM", pid)
      status = wait_pid(pid, timeout)
      return status if status

      Process.kill("KILL", -pid)
      wait_pid(pid, 5)
      nil
    rescue Errno::ESRCH, Errno::ECHILD
      nil
    end

    def wait_pid(pid, timeout)
      deadline = monotonic + timeout
      loop do
        done = Process.waitpid2(pid, Process::WNOHANG)
        return done[1] if done
        return nil if monotonic > deadline

        sleep 0.05
      end
    end

    # Polls the block until it returns a truthy value; raises with the
    # message (a String or a callable) after timeout seconds.
    def wait_for(message, timeout: 40, interval: 0.2)
      deadline = monotonic + timeout
      loop do
        value = yield
        return value if value
        raise "timed out after #{timeout}s waiting for #{message.respond_to?(:call) ? message.call : message}" if monotonic > deadline

        sleep interval
      end
    end

    def monotonic = Process.clock_gettime(Process::CLOCK_MONOTONIC)

    def path(*parts) = File.join(root, *parts)

    private

    def app_env
      { "BUNDLE_GEMFILE" => File.join(root, "Gemfile"), "RAILS_ENV" => "development", "DISABLE_SPRING" => "1",
        "BOOTSNAP_CACHE_DIR" => nil, "KAAL_TICK_INTERVAL" => "1" }
    end

    def build
      base = Dir.mktmpdir("kaal-rails-app-")
      at_exit { FileUtils.rm_rf(base) } unless ENV["KAAL_KEEP_APP"] == "1"
      warn "kaal-rails specs: generated app in #{base}/app" if ENV["KAAL_KEEP_APP"] == "1"
      rails = Gem.bin_path("railties", "rails")
      out, status = Open3.capture2e(RbConfig.ruby, rails, "new", "app", *RAILS_FLAGS, chdir: base)
      raise "rails new failed:\n#{out}" unless status.success?

      app = File.join(base, "app")
      @root = app
      write_gemfile(app)
      enable_active_job(app)
      FileUtils.cp_r("#{FIXTURES}/.", app)
      run!("bundle", "install", "--local", "--quiet", timeout: 300)
      app
    end

    # Only gems the top Gemfile installs (its test group), so the bundle
    # resolves locally.
    def write_gemfile(app)
      File.write(File.join(app, "Gemfile"), <<~RUBY)
        source Gem.default_sources.first

        gem "railties", "~> 7.2.0"
        gem "actionpack", "~> 7.2.0"
        gem "activejob", "~> 7.2.0"
        gem "activerecord", "~> 7.2.0"
        gem "psych", "< 5"
        gem "sqlite3", ">= 1.6"
        gem "pg", "~> 1.5"
        gem "trilogy", "~> 2.9"
        gem "puma", ">= 6.4"
        gem "solid_queue", "~> 1.1", require: false # hand-off specs (APP_QUEUE_ADAPTER)
        gem "good_job", "~> 4.0", require: false
        gem "kaal", path: #{REPO.inspect}
        gem "kaal-rails", path: #{File.join(REPO, "kaal-rails").inspect}
      RUBY
    end

    # --minimal leaves Active Job out; a scheduler app wants it. The schema
    # format follows SCHEMA_FORMAT so one app checks schema.rb and
    # structure.sql. APP_QUEUE_ADAPTER=solid_queue|good_job loads that gem
    # and makes it the queue adapter (hand-off specs); else :async.
    def enable_active_job(app)
      file = File.join(app, "config", "application.rb")
      text = File.read(file).sub('# require "active_job/railtie"', 'require "active_job/railtie"')
      text = text.sub(/^Bundler\.require.*$/) do
        "#{Regexp.last_match(0)}\nrequire ENV[\"APP_QUEUE_ADAPTER\"] if %w[solid_queue good_job].include?(ENV[\"APP_QUEUE_ADAPTER\"])"
      end
      text = text.sub(/^(\s*)config\.load_defaults.*$/) do
        "#{Regexp.last_match(0)}\n#{Regexp.last_match(1)}config.active_job.queue_adapter = " \
          "(ENV[\"APP_QUEUE_ADAPTER\"] || \"async\").to_sym\n" \
          "#{Regexp.last_match(1)}config.time_zone = ENV[\"APP_TIME_ZONE\"] if ENV[\"APP_TIME_ZONE\"]"
      end
      File.write(file, text)
    end
  end

  # Database URLs for one dialect: a name per purpose, in the app's storage
  # directory (SQLite) or on the test server.
  class Databases
    attr_reader :dialect

    def initialize(dialect)
      @dialect = dialect
      @tag = "#{Process.pid}_#{SecureRandom.hex(3)}"
    end

    def available?
      dialect == "sqlite" || !server_url.to_s.empty?
    end

    def server_url
      { "postgres" => ENV.fetch("KAAL_TEST_POSTGRES_URL", nil), "mysql" => ENV.fetch("KAAL_TEST_MYSQL_URL", nil) }[dialect]
    end

    # The DATABASE_URL of the database named +purpose+.
    def url(purpose)
      name = "kaal_rails_#{purpose}_#{@tag}"
      case dialect
      when "sqlite" then "sqlite3:storage/#{name}.sqlite3"
      when "postgres" then server_url.sub(%r{\Apostgres(ql)?://}, "postgresql://").sub(%r{/[^/?]*(\?|\z)}, "/#{name}\\1")
      else server_url.sub(%r{\A(mysql2?|mariadb)://}, "trilogy://").sub(%r{/[^/?]*(\?|\z)}, "/#{name}\\1")
      end
    end

    # Rows of sql in the database +purpose+, as Arrays.
    def query(purpose, sql)
      case dialect
      when "sqlite"
        require "sqlite3"
        db = SQLite3::Database.new(File.join(GeneratedApp.root, URI(url(purpose)).opaque.to_s))
        db.busy_timeout = 5000
        db.execute(sql)
      when "postgres"
        require "pg"
        conn = PG.connect(url(purpose))
        conn.exec(sql).values
      else
        require "trilogy"
        u = URI(url(purpose))
        conn = Trilogy.new(host: u.host, port: u.port, username: u.user, password: u.password,
                           database: u.path.delete_prefix("/"))
        conn.query(sql).rows
      end
    ensure
      db&.close
      conn&.close
    end
  end
end

# frozen_string_literal: true

require_relative "runtime_helper"
require "open3"
require "rbconfig"
require "json"

RSpec.describe "kaal init/start/status/tick/validate/migrate (subprocess)" do
  include KaalRuntimeHelper

  bin = File.expand_path("../../bin/kaal", __dir__)
  lib = File.expand_path("../../lib", __dir__)
  define_method(:bin) { bin }
  define_method(:lib) { lib }

  around { |ex| in_tmpdir { ex.run } }

  def kaal(*args, env: {})
    out, err, status = Open3.capture3({ "KAAL_ENV" => nil, "RAILS_ENV" => nil, "RACK_ENV" => nil }.merge(env),
                                      RbConfig.ruby, "-I", lib, bin, *args)
    [out, err, status.exitstatus]
  end

  def app(tick_interval: 1)
    _, err, code = kaal("init", "--backend=memory")
    raise "init failed: #{err}" unless code.zero?

    File.write("config/kaal.yml", File.read("config/kaal.yml").sub("  namespace: kaal\n", "  namespace: kaal\n  tick_interval: #{tick_interval}\n"))
    write("jobs.rb", <<~RUBY)
      class EchoJob
        def self.perform(key, unix)
          $stdout.puts "ECHO \#{key} \#{unix}"
          $stdout.flush
        end
      end
    RUBY
    write("config/kaal-scheduler.yml", <<~YAML)
      defaults:
        jobs:
          - key: echo
            cron: "* * * * * *"
            job_class: EchoJob
            args: ["{{key}}", "{{fire_time.unix}}"]
    YAML
  end

  describe "init" do
    it "writes both files, refuses to overwrite without --force, and explains SQL" do
      out, _, code = kaal("init", "--backend=memory")
      expect(code).to eq(0)
      expect(out).to include("wrote config/kaal.yml (backend memory)")
      expect(YAML.safe_load(File.read("config/kaal.yml"))["defaults"]).to include("backend" => "memory")
      expect(File.read("config/kaal-scheduler.yml")).to include('#   - key: "reports:weekly_summary"')

      _, err, code = kaal("init", "--backend=redis")
      expect(code).to eq(2)
      expect(err).to include("already exist (nothing written; pass --force to overwrite)")
      expect(File.read("config/kaal.yml")).to include("backend: memory")

      _, _, code = kaal("init", "--backend=redis", "--force")
      expect(code).to eq(0)
      expect(YAML.safe_load(File.read("config/kaal.yml"))["defaults"]["backend_config"]).to eq("url" => "redis://127.0.0.1:6379/0")

      out, _, code = kaal("init", "--backend=postgres", "--force")
      expect(code).to eq(0)
      expect(out).to include("then run `kaal migrate`")
      expect(YAML.safe_load(File.read("config/kaal.yml"))["defaults"]["backend_config"])
        .to eq("url" => "postgres://127.0.0.1:5432/my_app")
      _, _, code = kaal("validate")
      expect(code).to eq(0)

      _, err, code = kaal("init", "--backend=oracle", "--force")
      expect([err, code]).to eq([%(kaal: init: --backend must be one of memory, redis, sqlite, postgres, mysql, got "oracle"\n), 2])
    end

    it "sets up SQLite in db/kaal.sqlite3, ready to start" do
      out, _, code = kaal("init", "--backend=sqlite")
      expect(code).to eq(0)
      expect(out).to include("db/kaal.sqlite3 and its tables are created on first use")
      _, err, code = kaal("tick")
      expect([err, code]).to eq(["", 0])
      expect(File.exist?("db/kaal.sqlite3")).to be(true)
    end
  end

  describe "validate" do
    it "checks both files, exit 2 naming the file on a mistake" do
      app
      out, _, code = kaal("validate", "-e", "development")
      expect([out, code]).to eq(["ok: config/kaal.yml (backend memory), config/kaal-scheduler.yml (1 job)\n", 0])
      out, = kaal("validate", "--json")
      expect(JSON.parse(out)).to include("ok" => true, "backend" => "memory")

      File.write("config/kaal-scheduler.yml", "defaults:\n  jobs:\n    - {key: x, cron: '* * *', job_class: X}\n")
      _, err, code = kaal("validate")
      expect(code).to eq(2)
      expect(err).to start_with('kaal: config/kaal-scheduler.yml: defaults.jobs[0] (job "x"): cron: "* * *": ')
    end
  end

  describe "exit codes and messages" do
    it "status and validate agree on a missing scheduler file: exit 2, unless jobs are registered in code" do
      app
      File.delete("config/kaal-scheduler.yml")
      %w[status validate].each do |command|
        out, err, code = kaal(command)
        expect([out, code]).to eq(["", 2]), "#{command}: #{err}"
        expect(err).to eq("kaal: config/kaal-scheduler.yml: scheduler file not found and no job is registered in code " \
                          "(run `kaal init`, set scheduler_config_path, or pass --config PATH)\n")
      end
      write("code_jobs.rb", "Kaal.register(key: 'tick', cron: '@hourly') {}\n")
      out, err, code = kaal("status", "--require", "./code_jobs.rb")
      expect(code).to eq(0), err
      expect(out).to include("Jobs (1):")
      out, err, code = kaal("validate", "--require", "./code_jobs.rb")
      expect([out.lines.first, code]).to eq(["ok: config/kaal.yml (backend memory), no scheduler file, 1 job registered in code\n", 0]), err
    end

    it "status shows a job's state with its source" do
      app
      File.write("config/kaal-scheduler.yml", File.read("config/kaal-scheduler.yml") + "      enabled: false\n")
      out, err, code = kaal("status", "--require", "./jobs.rb")
      expect(code).to eq(0), err
      expect(out).to match(/^  echo\s.*\sdisabled \(file\)\s+EchoJob$/)
      out, = kaal("status", "--json")
      expect(JSON.parse(out)["jobs"].first).to include("enabled" => false, "source" => "file", "source_enabled" => false,
                                                      "paused" => false, "state" => "disabled (file)")
    end

    it "refuses an --env naming no section of the files" do
      app
      %w[validate status tick].each do |command|
        out, err, code = kaal(command, "-e", "nosuchenv", "--require", "./jobs.rb")
        expect([out, code]).to eq(["", 2]), "#{command}: #{out}#{err}"
        expect(err).to eq('kaal: --env nosuchenv: no section "nosuchenv" in config/kaal.yml or ' \
                          "config/kaal-scheduler.yml (sections: development, test, production)\n")
      end
      _, err, code = kaal("validate", "-e", "production")
      expect(code).to eq(0), err
    end

    it "warns at load that queue: does nothing for a plain .perform class" do
      app
      File.write("config/kaal-scheduler.yml", File.read("config/kaal-scheduler.yml") + "      queue: critical\n")
      out, err, code = kaal("validate", "--require", "./jobs.rb")
      expect(code).to eq(0), err
      expect(out).to start_with("ok: ")
      expect(err).to include('config/kaal-scheduler.yml: defaults.jobs[0] (job "echo"): queue: "critical" is ignored: ' \
                             "EchoJob (plain .perform) runs on kaal's worker pool; queue applies to ActiveJob and Sidekiq classes")
    end

    it "tick says it gave up when the backend is down, without promising a retry" do
      skip "redis backend not built" unless Kaal::Native.backends.include?("redis")

      app
      File.write("config/kaal.yml", File.read("config/kaal.yml").sub("backend: memory", "backend: redis")
                                        .sub("backend_config: {}", "backend_config:\n    url: redis://127.0.0.1:1/0"))
      out, err, code = kaal("tick", "--require", "./jobs.rb")
      expect(code).to eq(1)
      expect(out + err).not_to include("retrying")
      expect(err).to include("kaal: tick gave up: backend redis unreachable; nothing was dispatched")
    end
  end

  describe "validate checks what start would, in every environment" do
    it "refuses a backend URL start would refuse, in any environment section; --env narrows it" do
      app
      File.write("config/kaal.yml", File.read("config/kaal.yml").sub("production: {}", "production:\n  backend: redis\n  backend_config:\n    url: http://x\n"))
      out, err, code = kaal("validate")
      expect([out, code]).to eq(["", 2])
      expect(err).to eq(%(kaal: backend_config.url: unknown URL scheme "http" in "http://x" (environment production)\n))
      out, err, code = kaal("validate", "--env", "development")
      expect([out, code]).to eq(["ok: config/kaal.yml (backend memory), config/kaal-scheduler.yml (1 job)\n", 0]), err
      _, err, code = kaal("start", "--env", "production")
      expect(code).to eq(2)
      expect(err).to include('unknown URL scheme "http"')
    end

    it "refuses a bad redis URL and job errors of other environments" do
      skip "redis backend not built" unless Kaal::Native.backends.include?("redis")

      app
      original = File.read("config/kaal.yml")
      File.write("config/kaal.yml", original.sub("test: {}", "test:\n  backend: redis\n  backend_config:\n    url: rediss://:pw@127.0.0.1:6390/x\n"))
      _, err, code = kaal("validate")
      expect(code).to eq(2)
      expect(err).to include("redis database must be a number", "(environment test)")
      expect(err).not_to include(":pw@")

      File.write("config/kaal.yml", original)
      File.write("config/kaal-scheduler.yml", File.read("config/kaal-scheduler.yml") +
                 "production:\n  jobs:\n    - {key: nightly, cron: '0 25 * * *', job_class: EchoJob}\n")
      out, err, code = kaal("validate")
      expect([out, code]).to eq(["", 2])
      expect(err).to start_with('kaal: config/kaal-scheduler.yml: production.jobs[0] (job "nightly"): cron: ').and include("(environment production)")
      out, = kaal("validate", "-e", "development")
      expect(out).to start_with("ok: ")
    end

    it "lists the environments it checked" do
      app
      out, err, code = kaal("validate")
      expect(code).to eq(0), err
      expect(out).to eq("ok: config/kaal.yml (backend memory), config/kaal-scheduler.yml (1 job)\n" \
                        "also checked: environments test, production\n")
      out, = kaal("validate", "--json")
      expect(JSON.parse(out)["environments"]).to eq(%w[development test production])
    end
  end

  describe "tick" do
    it "runs one tick and prints what it dispatched" do
      app
      out, err, code = kaal("tick", "--require", "./jobs.rb", "--json")
      expect(code).to eq(0), err
      data = JSON.parse(out.lines.last)
      expect(data["backend_ok"]).to be(true)
      expect(data["dispatches"].map { |d| d["key"] }.uniq).to eq(["echo"])
      expect(data["dispatches"].map { |d| d["status"] }.uniq).to eq(["dispatched"])
      expect(out).to include("ECHO echo ")

      out, _, code = kaal("tick", "--require", "./jobs.rb")
      expect(code).to eq(0)
      expect(out).to match(/^echo @ \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  dispatched$/)
    end
  end

  describe "status" do
    it "lists settings, jobs with next fire time and state; exit 2 naming a broken file" do
      app
      out, err, code = kaal("status", "--require", "./jobs.rb")
      expect(code).to eq(0), err
      expect(out).to include("backend", "memory", "Jobs (1):", "Delayed jobs pending: 0")
      expect(out).to match(/^  echo\s+\* \* \* \* \* \*\s+UTC\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00\s+enabled\s+EchoJob$/)

      out, = kaal("status", "--json")
      data = JSON.parse(out)
      expect(data["jobs"].first).to include("key" => "echo", "enabled" => true)
      expect(data["backend"]["reachable"]).to be(true)

      File.write("config/kaal.yml", "defaults:\n  backend: memory\n  tick_interval: [1\n")
      out, err, code = kaal("status")
      expect(code).to eq(2)
      expect(err).to start_with("kaal: config/kaal.yml: line ")
      expect(out).to be_empty

      File.write("config/kaal.yml", "defaults:\n  backend: memory\n  tick_intervall: 1\n")
      _, err, code = kaal("status")
      expect(code).to eq(2)
      expect(err).to include("config/kaal.yml: tick_intervall: unknown option")
    end

    it "redacts passwords and exits 1 when the backend is unreachable" do
      skip "redis backend not built" unless Kaal::Native.backends.include?("redis")

      write("config/kaal.yml", "defaults:\n  backend: redis\n  backend_config:\n    url: redis://:hunter2@127.0.0.1:1/0\n    connect_timeout: 0.5\n")
      write("config/kaal-scheduler.yml", "defaults:\n  jobs: []\n")
      out, err, code = kaal("status")
      expect(code).to eq(1)
      expect(out + err).not_to include("hunter2")
      expect(out).to include("Backend: UNREACHABLE")
      expect(err).to include("backend redis unreachable")
    end

    it "reports a missing configuration file with exit 2" do
      _, err, code = kaal("status")
      expect(code).to eq(2)
      expect(err).to include("config/kaal.yml: configuration file not found")
    end
  end

  describe "start" do
    # `kaal start --require ./jobs.rb` in the background: [its wait thread,
    # the output lines so far (filled as they come), the reader thread].
    def start_node
      stdin, out, wait = Open3.popen2e(RbConfig.ruby, "-I", lib, bin, "start", "--require", "./jobs.rb")
      stdin.close
      lines = []
      [wait, lines, Thread.new { out.each_line { |l| lines << l } }]
    end

    it "fires a 6-field job every second, and TERM exits 0 after the current tick" do
      app
      wait, lines, reader = start_node
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
      sleep 0.1 until lines.grep(/^ECHO/).size >= 4 || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      Process.kill("TERM", wait.pid)
      expect(wait.value.exitstatus).to eq(0)
      reader.join(5)
      runs = lines.grep(/^ECHO echo (\d+)/) { Regexp.last_match(1).to_i }
      expect(runs.size).to be >= 4
      expect(runs).to eq(runs.uniq)
      steady = runs.drop(2) # the first tick may include a catch-up run
      expect(steady.each_cons(2).map { |a, b| b - a }).to all(eq(1))
      expect(lines.join).to include("received TERM", "stopped cleanly")
    end

    it "reloads the scheduler file on HUP, keeps the jobs when the new file is broken, and goes on" do
      app
      wait, lines, reader = start_node
      wait_for = lambda do |pattern|
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
        sleep 0.05 until lines.grep(pattern).any? || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
        expect(lines.grep(pattern)).not_to be_empty, "no #{pattern.inspect} in:\n#{lines.join}"
      end
      wait_for.call(/^ECHO echo /)
      # A new job, with the file's old mtime: only the HUP can make the scheduler see it.
      mtime = File.mtime("config/kaal-scheduler.yml")
      File.write("config/kaal-scheduler.yml", File.read("config/kaal-scheduler.yml").gsub("key: echo", "key: other"))
      File.utime(mtime, mtime, "config/kaal-scheduler.yml")
      Process.kill("HUP", wait.pid)
      wait_for.call(/^ECHO other /)
      expect(lines.join).to include("received HUP: reloading", "config/kaal-scheduler.yml: 1 jobs")
      File.write("config/kaal-scheduler.yml", "defaults:\n  jobs: [\n")
      File.utime(mtime, mtime, "config/kaal-scheduler.yml")
      Process.kill("HUP", wait.pid)
      wait_for.call(/kept the previous jobs/)
      seen = lines.grep(/^ECHO other /).size
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
      sleep 0.05 until lines.grep(/^ECHO other /).size >= seen + 2 || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      expect(lines.grep(/^ECHO other /).size).to be >= seen + 2 # the previous jobs still fire
      Process.kill("TERM", wait.pid)
      expect(wait.value.exitstatus).to eq(0)
      reader.join(5)
    end

    it "exits at once on a second signal while a job is still running" do
      app
      write("jobs.rb", "class EchoJob\n  def self.perform(*)\n    $stdout.puts 'SLOW'\n    $stdout.flush\n    sleep 60\n  end\nend\n")
      wait, lines, reader = start_node
      sleep 0.1 until lines.grep(/SLOW/).any? || !wait.alive?
      Process.kill("INT", wait.pid)
      wait_until("the first INT to be handled") { lines.grep(/received INT/).any? || !wait.alive? }
      expect(wait.alive?).to be(true) # waiting for the slow job (shutdown_timeout 30)
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      Process.kill("INT", wait.pid)
      expect(wait.value.exitstatus).to eq(1)
      expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).to be < 3
      reader.join(5)
      expect(lines.join).to include("second signal: exiting now")
    end
  end

  describe "global options" do
    it "--config PATH finds the scheduler file from the app root, --env picks the section" do
      Dir.mkdir("app")
      Dir.chdir("app") { app }
      File.write("app/config/kaal.yml", File.read("app/config/kaal.yml").sub("production: {}", "production:\n  namespace: prod-ns"))
      out, err, code = kaal("status", "--config", "app/config/kaal.yml", "--env", "production", "--require", "./app/jobs.rb", "--json")
      expect(code).to eq(0), err
      data = JSON.parse(out)
      expect(data["settings"]["namespace"]).to eq("prod-ns")
      expect(data["environment"]).to eq("production")
      expect(data["jobs"].map { |j| j["key"] }).to eq(["echo"])
    end

    it "boots a Rails-style app from config/environment.rb" do
      app
      File.delete("jobs.rb")
      write("config/environment.rb", <<~RUBY)
        class EchoJob
          def self.perform(key, unix)
            $stdout.puts "BOOTED \#{key} \#{unix}"
          end
        end
      RUBY
      out, err, code = kaal("tick")
      expect(code).to eq(0), err
      expect(out).to include("BOOTED echo ")
    end
  end

  describe "migrate" do
    it "runs the backend's migrate" do
      app
      out, err, code = kaal("migrate")
      expect([out, err, code]).to eq(["migrated: backend memory, namespace kaal\n", "", 0])
    end
  end
end

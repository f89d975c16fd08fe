# frozen_string_literal: true

require "sequel"
require "securerandom"
require "tmpdir"

# Upgrading in place from the previous release's schema (f7287a2, the
# statements in spec/fixtures/schema_f7287a2/): a database holding those
# tables and some rows; a real `kaal start` refuses it naming the command;
# `kaal migrate` applies step 2 only, keeps the rows and records the steps;
# then the stored schedules work and `kaal start` runs.
RSpec.describe "schema upgrade from the previous release", :integration do
  FIXTURES = File.expand_path("../fixtures/schema_f7287a2", __dir__)

  def old_statements(dialect)
    File.read(File.join(FIXTURES, "#{dialect}.sql")).lines.reject { |l| l.start_with?("--") }.join
        .split(";\n").map(&:strip).reject(&:empty?)
  end

  # A database of its own for the example: [kaal's backend_config, a Sequel
  # connection to it]; dropped afterwards.
  def fresh_database(dialect)
    case dialect
    when "sqlite"
      path = File.join(@dir, "old.sqlite3")
      [{ "path" => path }, Sequel.connect("sqlite://#{path}")]
    else
      url = KaalBackendSpec.service_url(dialect)
      raise "#{dialect}: test server not configured (KAAL_REQUIRE_SERVICES=1)" if url.to_s.empty? && KaalBackendSpec.require_services?
      skip "start the test servers (bin/services start) to run" if url.to_s.empty?

      name = "kaal_upgrade_#{SecureRandom.hex(4)}"
      uri = URI(url)
      sequel_url = ->(db) { "#{dialect == "mysql" ? "mysql2" : "postgres"}://#{uri.userinfo}@#{uri.host}:#{uri.port}/#{db}" }
      Sequel.connect(sequel_url.call(uri.path.delete_prefix("/"))) { |admin| admin.run("CREATE DATABASE #{name}") }
      @drop = -> { Sequel.connect(sequel_url.call(uri.path.delete_prefix("/"))) { |admin| admin.run("DROP DATABASE #{name}") } }
      [{ "url" => "#{dialect}://#{uri.userinfo}@#{uri.host}:#{uri.port}/#{name}" }, Sequel.connect(sequel_url.call(name))]
    end
  end

  around do |example|
    Dir.mktmpdir("kaal-upgrade") do |dir|
      @dir = dir
      example.run
    ensure
      @db&.disconnect
      @node&.cleanup
      @drop&.call
    end
  end

  %w[sqlite postgres mysql].each do |dialect|
    it "on #{dialect}: a node refuses the old schema naming `kaal migrate`, which upgrades it in place" do
      skip "#{dialect} is not built" unless Kaal::Native.backends.include?(dialect)

      backend_config, @db = fresh_database(dialect)
      old_statements(dialect).each { |sql| @db.run(sql) }
      @db[:kaal_dispatches].insert(namespace: "kaal-upgrade", job_key: "old", fire_time: 1_700_000_000,
                                   status: "dispatched", node: "n1", claimed_at: 1_700_000_000, updated_at: 1_700_000_001)
      @db[:kaal_job_states].insert(namespace: "kaal-upgrade", job_key: "old", enabled: false, updated_at: 1)
      @node = Kaal::Spec::KaalProcess.new(backend: dialect, backend_config: backend_config,
                                          settings: { "namespace" => "kaal-upgrade" },
                                          jobs: [{ "key" => "tick", "cron" => "* * * * *", "job_class" => "UpgradeJob" }],
                                          jobs_rb: "class UpgradeJob; def self.perform(*); end; end\n")

      # The old schema: kaal start exits, naming the command to run.
      @node.start
      wait_until("kaal start to exit", timeout: 30) { !@node.alive? }
      expect(@node.log).to include("schema step 1 of #{Kaal::Backend::Schema::VERSION}", "run `kaal migrate`")
      expect(@db.table_exists?(:kaal_schedules)).to be(false) # nothing changed behind the user's back
      out, err, code = @node.command("status")
      expect([code, err]).to eq([0, ""])
      expect(out).to match(/Stored schedules: unavailable \(.*kaal_schedules.*run `kaal migrate`/)

      out, err, code = @node.command("migrate")
      expect([out, err, code]).to eq(["migrated: backend #{dialect}, namespace kaal-upgrade (schema step 1 -> 2)\n", "", 0])
      expect(@node.command("migrate")[0]).to include("(schema step 2, nothing to do)")
      expect(@db[:kaal_schema_steps].select_order_map(:step)).to eq([1, 2])
      expect(@db[:kaal_dispatches].where(job_key: "old").get(:status)).to eq("dispatched") # rows kept
      expect(@db[:kaal_job_states].where(job_key: "old").count).to eq(1)

      out, err, code = @node.command("schedules", "add", "report:1", "--cron", "0 9 * * *", "--class", "UpgradeJob",
                                     "--args", "[1]", "-z", "Europe/Paris")
      expect([err, code]).to eq(["", 0]), err
      expect(out).to include("stored: report:1")
      listed = JSON.parse(@node.command("schedules", "list", "--json")[0])
      expect(listed.map { |s| s.values_at("key", "time_zone", "args", "state") })
        .to eq([["report:1", "Europe/Paris", [1], "enabled"]])

      @node.start
      wait_until("kaal start to run on the upgraded schema:\n#{@node.log}", timeout: 30) do
        @node.log.include?("scheduler started")
      end
      expect(@node.stop).to eq(0)
    end
  end
end

# frozen_string_literal: true

require "spec_helper"
require "rbconfig"

# A `kaal start` node whose SQLite file is locked by another process while it
# starts (the schema check and connect cannot get the lock within the busy
# timeout) must neither exit nor run anything: it fails closed like in any
# backend outage, and runs its jobs once the lock is released.
RSpec.describe "kaal start on a locked SQLite file", :integration do
  kaal_backend_for :sqlite
  temp_sqlite_file "kaal-locked-start"

  # Holds BEGIN EXCLUSIVE on the file until a line arrives on its stdin, so
  # the lock is released only when the spec has seen the node fail on it.
  HOLDER = <<~'RUBY'
    require "sqlite3"
    db = SQLite3::Database.new(ARGV[0])
    db.busy_timeout = 30_000
    db.execute("BEGIN EXCLUSIVE")
    $stdout.puts "locked"
    $stdout.flush
    $stdin.gets
    db.execute("ROLLBACK")
    db.close
    $stdout.puts "unlocked"
    $stdout.flush
  RUBY

  jobs_rb = <<~RUBY
    class TickleJob
      def self.perform(unix)
        File.open("ticks.log", "a") { |f| f.puts(unix) }
      end
    end
  RUBY
  tickle = [{ "key" => "tickle", "cron" => "* * * * * *", "job_class" => "TickleJob", "args" => ["{{fire_time.unix}}"] }]

  before do
    @node = Kaal::Spec::KaalProcess.new(backend: "sqlite", backend_config: { "path" => @path, "command_timeout" => 0.3 },
                                        jobs_rb: jobs_rb, jobs: tickle)
  end

  after do
    @node&.cleanup
    if @holder_pid
      @holder_in.close unless @holder_in.closed?
      Process.kill("KILL", @holder_pid) rescue nil # rubocop:disable Style/RescueModifier
      Process.wait(@holder_pid) rescue nil # rubocop:disable Style/RescueModifier
    end
  end

  def hold_lock
    out_r, out_w = IO.pipe
    in_r, @holder_in = IO.pipe
    @holder_pid = Process.spawn(RbConfig.ruby, "-e", HOLDER, @path, in: in_r, out: out_w)
    out_w.close
    in_r.close
    @holder_out = out_r
    expect(@holder_out.gets).to eq("locked\n")
  end

  def release_lock
    @holder_in.puts("go")
    @holder_in.flush
    expect(@holder_out.gets).to eq("unlocked\n")
  end

  def ticks
    path = @node.path("ticks.log")
    File.exist?(path) ? File.readlines(path).size : 0
  end

  def expect_fail_closed_then_recovery
    @node.start
    wait_until("the node to fail on the locked file", timeout: 60) do
      expect(@node.alive?).to be(true), "the node exited while the file was locked:\n#{@node.log}"
      @node.log.include?("database is locked")
    end
    # Fail closed: still running, nothing ran while it could not claim.
    wait_until("a retry after the first failure", timeout: 20) { @node.log.scan("database is locked").size >= 2 } rescue raise(RSpec::Expectations::ExpectationNotMetError, @node.log)
    expect(@node.alive?).to be(true), @node.log
    expect(ticks).to eq(0)

    release_lock
    wait_until("the job to run after the lock was released", timeout: 60) do
      expect(@node.alive?).to be(true), "the node exited:\n#{@node.log}"
      ticks >= 2
    end
    expect(@node.stop).to eq(0)
  end

  it "fails closed and recovers when the file already has kaal's tables" do
    _out, err, status = @node.command("migrate")
    expect(status).to eq(0), err
    hold_lock
    expect_fail_closed_then_recovery
  end

  it "fails closed and recovers when the file is new (no tables yet)" do
    hold_lock
    expect_fail_closed_then_recovery
  end

  # The check a locked start could not make runs once the lock is gone: an
  # older schema found then fails every tick naming the command, and
  # nothing runs against it.
  it "keeps failing closed, naming `kaal migrate`, when the file it could not check is at an older schema" do
    require "sqlite3"
    fixture = File.expand_path("../fixtures/schema_f7287a2/sqlite.sql", __dir__)
    SQLite3::Database.new(@path).then do |db|
      db.execute_batch(File.read(fixture))
    ensure
      db.close # open, it would be inherited by the forks of other specs
    end
    hold_lock
    @node.start
    wait_until("the node to defer its schema check", timeout: 60) do
      expect(@node.alive?).to be(true), "the node exited while the file was locked:\n#{@node.log}"
      @node.log.include?("schema check deferred")
    end
    release_lock
    wait_until("a tick to fail on the older schema", timeout: 60) do
      expect(@node.alive?).to be(true), "the node exited:\n#{@node.log}"
      @node.log.scan("run `kaal migrate`").size >= 2
    end
    expect(ticks).to eq(0)
    expect(@node.stop).to eq(0)
  end
end

# frozen_string_literal: true

require "spec_helper"
require "tmpdir"

# A call that completes while its thread is being interrupted cannot hand its
# results to Ruby (the interrupt is raised instead). What it took must not
# vanish: delayed jobs go back to the store, won pairs are recorded "failed"
# with the reason. Here the call waits on SQLite's lock (held by another
# connection) while the thread is interrupted, then completes once the lock
# is released, so the interrupt lands after the work is done every time.
RSpec.describe "Results of a backend call completed during an interrupt" do
  kaal_backend_for :sqlite

  around do |example|
    require "sqlite3"
    Dir.mktmpdir("kaal-interrupt-") do |dir|
      @path = File.join(dir, "kaal.sqlite3")
      example.run
    end
  end

  let!(:backend) do
    Kaal::Backend.build(:sqlite, namespace: "ns", config: { path: @path, command_timeout: 10 }).tap(&:migrate)
  end

  # Holds SQLite's write lock from another connection while the block runs.
  def with_write_lock
    db = SQLite3::Database.new(@path)
    db.busy_timeout = 5000
    db.execute("BEGIN IMMEDIATE")
    yield
  ensure
    db&.execute("ROLLBACK")
    db&.close
  end

  # Starts the call in a thread, interrupts it while it waits on the lock,
  # releases the lock; returns what the thread ended with.
  def interrupted(&call)
    thread = nil
    with_write_lock do
      thread = Thread.new(&call)
      thread.report_on_exception = false
      sleep 0.01 until thread.status == "sleep" || !thread.alive?
      sleep 0.2 # inside SQLite's busy wait
      thread.raise(IOError, "stop")
    end
    thread.value
  rescue IOError
    :interrupted
  end

  it "puts the delayed jobs back" do
    300.times { |i| backend.delayed_add(job_id: "j#{i}", run_at_ms: 1000 + i, job_class: "W", args_json: "[]") }
    outcome = interrupted { backend.delayed_claim(now_ms: 10**12, limit: 1000) }
    expect(outcome).to eq(:interrupted)
    expect(backend.delayed_count).to eq(300)
    expect(backend.delayed_claim(now_ms: 10**12, limit: 1000).size).to eq(300)
  end

  it "records won pairs as failed, with the reason" do
    outcome = interrupted { backend.claim([["a", 60], ["b", 60]], lease_ms: 60_000, node: "n1", now: 60) }
    expect(outcome).to eq(:interrupted)
    rows = backend.dispatches(limit: 10)
    expect(rows.map { |r| [r[:key], r[:status]] }.sort).to eq([%w[a failed], %w[b failed]])
    expect(rows.first[:error]).to match(/interrupted/)
  end
end

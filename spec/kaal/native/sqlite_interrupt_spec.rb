# frozen_string_literal: true

require "spec_helper"
require "timeout"

# SQLite has no server, but a call waits for another connection's lock (up
# to command_timeout) and a statement over many rows runs for a while. Both
# end within a fraction of a second when the thread is interrupted (Timeout,
# Thread#raise, Thread#kill), the wait without using the CPU, and the
# interrupted statement's transaction is rolled back: the call took nothing.
RSpec.describe "Interrupting a SQLite call" do
  before { skip "the sqlite backend is not compiled in" unless Kaal::Native.backends.include?("sqlite") }

  temp_sqlite_file("kaal-sqlite-interrupt-")

  let(:backend) do
    Kaal::Backend.build(:sqlite, namespace: "ns", config: { path: @path, command_timeout: 10 }).tap(&:migrate)
  end

  def raw
    require "sqlite3"
    @raw ||= SQLite3::Database.new(@path).tap { |db| db.busy_timeout = 5000 }
  end

  after { @raw&.close }

  # Holds SQLite's write lock from another connection while the block runs.
  def with_write_lock
    raw.execute("BEGIN IMMEDIATE")
    yield
  ensure
    raw.execute("ROLLBACK")
  end

  def claim(pairs) = backend.claim(pairs, lease_ms: 60_000, node: "n1", now: 60)

  describe "waiting for another connection's lock (command_timeout 10 s)" do
    it "ends under Timeout.timeout(0.3) within 0.5 s, without spinning, having claimed nothing" do
      backend.ping
      wall, used = with_write_lock do
        measure(Timeout::Error) { Timeout.timeout(0.3) { claim([["a", 60], ["b", 60]]) } }
      end
      expect(wall).to be < 0.8
      expect(used).to be < wall * 0.3
      expect(claim([["a", 60], ["b", 60]])).to eq([true, true])
    end

    it "ends on Thread#kill and Thread#raise, and the delayed jobs stay pending" do
      3.times { |i| backend.delayed_add(job_id: "j#{i}", run_at_ms: 1000, job_class: "W", args_json: "[]") }
      [->(t) { t.kill }, ->(t) { t.raise(IOError, "stop") }].each do |stop|
        with_write_lock do
          t = Thread.new do
            backend.delayed_claim(now_ms: 10**12, limit: 10)
          rescue IOError
            :raised
          end
          sleep 0.01 until t.status == "sleep" || !t.alive?
          sleep 0.1 # inside the lock wait
          t0 = mono
          stop.call(t)
          expect(t.join(1.0)).not_to be_nil, "the thread did not end within 1 s"
          expect(mono - t0).to be < 0.5
        end
      end
      expect(backend.delayed_count).to eq(3)
    end

    it "still gives up after command_timeout when nobody interrupts it" do
      quick = Kaal::Backend.build(:sqlite, namespace: "ns", config: { path: @path, command_timeout: 0.3 })
      quick.migrate
      with_write_lock do
        t0 = mono
        expect { quick.claim([["a", 60]], lease_ms: 60_000, node: "n1", now: 60) }
          .to raise_error(Kaal::BackendError, /database is locked/)
        expect(mono - t0).to be_between(0.25, 2.0)
      end
    ensure
      quick&.close
    end
  end

  describe "a statement over many rows" do
    it "ends within 0.5 s of Thread#raise, its transaction rolled back" do
      # 300,000 log rows: deleting them takes far longer than reaching the
      # statement, on any machine.
      backend.ping
      raw.execute("INSERT INTO kaal_dispatches (namespace, job_key, fire_time, status, claimed_at, updated_at)" \
                  " WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000)" \
                  " SELECT 'ns', printf('k%07d', x), x, 'claimed', 0, 0 FROM c")
      t = Thread.new do
        backend.cleanup(before: 10**9, limit: 10**7)
      rescue IOError
        :raised
      end
      sleep 0.001 until t.status == "sleep" || !t.alive? # inside the call, without the GVL
      t0 = mono
      t.raise(IOError, "stop")
      expect(t.join(1.0)).not_to be_nil, "the thread did not end within 1 s"
      expect(mono - t0).to be < 0.5
      expect(t.value).to eq(:raised)
      expect(raw.get_first_value("SELECT COUNT(*) FROM kaal_dispatches")).to eq(300_000)
      expect(claim([["a", 60]])).to eq([true]) # the handle works on
    end
  end
end

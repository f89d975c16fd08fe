# frozen_string_literal: true

RSpec.describe "Kaal memory backend" do
  kaal_backend_for :memory
  it_behaves_like "a kaal backend"
  it_behaves_like "stored schedules"

  let(:now) { 1_767_225_600 }

  it "is always built" do
    expect(Kaal::Native.backends).to include("memory")
    expect(Kaal::Backend.available).to include(:memory)
  end

  it "keeps one store per handle" do
    a = Kaal::Backend.build(:memory, namespace: "kaal")
    b = Kaal::Backend.build(:memory, namespace: "kaal")
    expect(a.claim([["job", now]], lease_ms: 1000, node: "n", now: now)).to eq([true])
    expect(b.claim([["job", now]], lease_ms: 1000, node: "n", now: now)).to eq([true])
  end

  # Its speed is measured by benchmarks/tick.rb and benchmarks/claims.rb.
  it "claims a batch of 10k pairs against a log of 100k rows, each pair exactly once" do
    backend = Kaal::Backend.build(:memory, namespace: "bench")
    backend.claim(Array.new(100_000) { |i| ["warm-#{i}", now] }, lease_ms: 1000, node: "n", now: now)
    pairs = Array.new(10_000) { |i| ["job-#{i}", now + 60] }
    expect(backend.claim(pairs, lease_ms: 1000, node: "n", now: now).count(true)).to eq(10_000)
    expect(backend.claim(pairs, lease_ms: 1000, node: "m", now: now).count(true)).to eq(0)
  end

  it "gives a forked child a fresh store (state never crosses processes)" do
    backend = Kaal::Backend.build(:memory, namespace: "fork")
    backend.set_enabled("job", false)
    expect(in_fork { backend.states.inspect }).to eq("{}")
    expect(backend.states).to eq("job" => false)
  end

  it "keeps working under GC stress and compaction" do
    backend = Kaal::Backend.build(:memory, namespace: "gc")
    begin
      GC.stress = true
      expect(backend.claim([["a", 1], [+"b", 2]], lease_ms: 10, node: "n", now: 1)).to eq([true, true])
      backend.record("a", 1, :failed, node: "n", error: RuntimeError.new("boom"), now: 2)
      backend.delayed_add(job_id: "j", run_at_ms: 1, job_class: "Job", args_json: "[]")
      rows = backend.dispatches
      jobs = backend.delayed_claim(now_ms: 5, limit: 3)
    ensure
      GC.stress = false
    end
    GC.compact if GC.respond_to?(:compact)
    expect(rows.map { |r| r[:key] }).to eq(%w[b a])
    expect(jobs.map { |j| j[:job_id] }).to eq(["j"])
    expect(backend.dispatch_status("a", 1)).to eq("failed")
  end

  it "frees its store when the handle is collected" do
    expect do
      20.times { Kaal::Backend.build(:memory, namespace: "gc").claim([["a", 1]], lease_ms: 1, node: "n", now: 1) }
      GC.start
    end.not_to raise_error
  end

  it "raises BackendUnavailableError naming the package for a backend not built" do
    missing = %w[redis sqlite postgres mysql] - Kaal::Native.backends
    skip "every backend is built here" if missing.empty?

    kind = missing.first
    package = { "redis" => "libhiredis-dev", "sqlite" => "libsqlite3-dev", "postgres" => "libpq-dev",
                "mysql" => "libmariadb-dev" }.fetch(kind)
    expect { Kaal::Native::Backend.new(kind, "ns", {}) }
      .to raise_error(Kaal::BackendUnavailableError, /#{package}.*re(install|compile)/)
  end

  it "refuses an unknown kind and bad parameters" do
    expect { Kaal::Native::Backend.new("cassandra", "ns", {}) }.to raise_error(Kaal::ConfigurationError, /unknown backend/)
    expect { Kaal::Native::Backend.new("memory", "", {}) }.to raise_error(ArgumentError, /namespace/)
    expect { Kaal::Native::Backend.new("memory", "ns", { "bogus" => 1 }) }.to raise_error(ArgumentError, /bogus/)
    expect { Kaal::Native::Backend.new("memory", "ns", { "port" => "x" }) }.to raise_error(ArgumentError, /port/)
    expect { Kaal::Backend.build(:memory, namespace: "") }.to raise_error(Kaal::ConfigurationError, /namespace/)
  end

  it "exposes the SQL schema of each built dialect" do
    %w[sqlite postgres mysql].each do |dialect|
      next unless Kaal::Native.backends.include?(dialect)

      begin
        ddl = Kaal::Native.schema(dialect)
      rescue Kaal::BackendUnavailableError
        next # the dialect's backend file has not defined its schema yet
      end
      expect(ddl).to all(be_a(String).and(be_frozen))
      expect(ddl.join("\n")).to include("kaal_dispatches").and include("kaal_delayed_jobs")
    end
    expect { Kaal::Native.schema("oracle") }.to raise_error(ArgumentError, /dialect/)
  end
end

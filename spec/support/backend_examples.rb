# frozen_string_literal: true

require "socket"

# "a kaal backend": the behaviour every backend must have, run against the
# real thing (a real server for redis/postgres/mysql, a real file for sqlite).
#
# Usage, one spec file per backend (spec/kaal/backend/<kind>_spec.rb):
#
#   RSpec.describe "Kaal redis backend" do
#     kaal_backend_for :redis          # skip/fail + backend_factory (spec/support/backends.rb)
#     it_behaves_like "a kaal backend"
#   end
#
# Without kaal_backend_for, the group must define:
#   let(:backend_factory)  -> callable(namespace) returning a fresh, migrated
#                             handle; for server backends every call opens a
#                             new connection (= another node)
#   let(:separate_handles) -> false when the backend cannot share state between
#                             handles (memory): the factory then returns the
#                             same handle for the same namespace, and the
#                             "other node" examples run on that one handle
#
# Server-specific behaviour (GVL release while the server is slow, timeouts,
# reconnect after the server restarts) belongs in the backend's own spec file;
# use expect_progress_while { ... } from spec/support/backends.rb for the GVL.
RSpec.shared_examples "a kaal backend" do
  let(:ns) { unique_namespace }
  let(:backend) { backend_factory.call(ns) }
  let(:other) { backend_factory.call(ns) } # another node on the same namespace
  let(:lease) { 60_000 }
  let(:now) { 1_767_225_600 } # 2026-01-01T00:00:00Z

  def claim(handle, pairs, node: "node-a", lease_ms: lease, at: now)
    handle.claim(pairs, lease_ms: lease_ms, node: node, now: at)
  end

  # Runs the block in `count` threads started together, each with its own
  # handle (another node) when the backend has separate handles, else on the
  # one handle; returns what each thread returned.
  def in_threads(count)
    handles = Array.new(count) { separate_handles ? backend_factory.call(ns) : backend }
    handles.each(&:connect)
    gate = Queue.new
    threads = handles.each_with_index.map do |h, i|
      Thread.new do
        gate.pop
        yield h, i
      end
    end
    count.times { gate << true }
    threads.map(&:value)
  end

  describe "connection" do
    it "connects lazily, answers ping and reports connected?" do
      expect(backend.kind).to eq(kaal_backend_kind) if respond_to?(:kaal_backend_kind)
      expect(backend.namespace).to eq(ns)
      expect(backend.ping).to be(true)
      expect(backend.connected?).to be(true)
    end

    it "reconnects after close and still has the data" do
      expect(claim(backend, [["job", now]])).to eq([true])
      backend.close
      expect(backend.connected?).to be(false)
      expect(backend.dispatch_status("job", now)).to eq("claimed")
      expect(claim(backend, [["job", now]])).to eq([false])
      expect(backend.connected?).to be(true)
    end

    # Server backends only (kaal_backend_for records the kind in the metadata).
    unless %i[memory sqlite].include?(metadata[:kaal_backend])
      it "raises Kaal::ConnectionError from ping when the server cannot be reached" do
        url = respond_to?(:kaal_backend_url) ? kaal_backend_url : nil
        skip "not a server backend" unless url

        port = TCPServer.open("127.0.0.1", 0) { |s| s.addr[1] } # nobody listens there
        params = Kaal::Backend::ConnectionParams.from(kaal_backend_kind, url: url)
        skip "the test URL names no port" unless params["port"]

        dead_url = url.sub(/:#{params["port"]}\b/, ":#{port}")
        dead = Kaal::Backend.build(kaal_backend_kind, namespace: ns, config: { url: dead_url, connect_timeout: 2 })
        expect { dead.ping }.to raise_error(Kaal::ConnectionError)
        expect(dead.connected?).to be(false)
      ensure
        dead&.close
      end
    end

    it "runs migrate more than once" do
      expect { backend.migrate; backend.migrate }.not_to raise_error
    end

    it "never shows a password in inspect" do
      expect(backend.inspect).to include(ns)
      expect(backend.inspect).not_to match(/password/i)
      password = Kaal::Backend::ConnectionParams.from(kaal_backend_kind, url: kaal_backend_url)["password"] if
        respond_to?(:kaal_backend_url) && kaal_backend_url
      expect(backend.inspect).not_to include(password) if password && !password.empty?
    end
  end

  describe "#claim" do
    it "returns one result per pair, in order" do
      expect(claim(backend, [["a", now], ["b", now]])).to eq([true, true])
      expect(claim(backend, [["b", now], ["c", now], ["a", now], ["a", now + 60]]))
        .to eq([false, true, false, true])
    end

    it "returns [] for no pairs" do
      expect(claim(backend, [])).to eq([])
    end

    it "answers claim_columns (keys and fire times apart, the scheduler's form) like claim" do
      expect(backend.claim_columns(%w[a b a], [now, now, now], lease_ms: lease, node: "node-a", now: now))
        .to eq([true, true, false])
      expect(claim(other, [["a", now], ["c", now]])).to eq([false, true])
      expect(backend.claim_columns([], [], lease_ms: lease, node: "node-a", now: now)).to eq([])
      expect { backend.claim_columns(%w[a b], [now], lease_ms: lease, node: "n", now: now) }
        .to raise_error(ArgumentError, /one size/)
      expect { backend.claim_columns(["d"], [Time.at(now)], lease_ms: lease, node: "n", now: now) }
        .to raise_error(ArgumentError, /fire_time must be an Integer/)
      expect(backend.dispatch_status("d", now)).to be_nil
    end

    it "accepts Symbol keys and Time fire times in claim" do
      expect(claim(backend, [[:sym, Time.at(now)], ["t", Time.at(now + 0.9)]])).to eq([true, true])
      expect(claim(other, [["sym", now], ["t", now]])).to eq([false, false])
    end

    it "wins a pair repeated in one batch once" do
      expect(claim(backend, [["a", now], ["a", now]])).to eq([true, false])
    end

    it "never wins a pair twice, from the same or another node" do
      expect(claim(backend, [["job", now]], node: "node-a")).to eq([true])
      expect(claim(backend, [["job", now]], node: "node-a")).to eq([false])
      expect(claim(other, [["job", now]], node: "node-b")).to eq([false])
      expect(backend.dispatches(key: "job").map { |r| r[:node] }).to eq(["node-a"])
    end

    it "does not win a claimed or recorded pair again after the lease expired" do
      expect(claim(backend, [["claimed", now], ["recorded", now]], lease_ms: 1)).to eq([true, true])
      backend.record("recorded", now, "dispatched", node: "node-a", now: now + 1)
      sleep 0.05
      expect(claim(other, [["claimed", now], ["recorded", now]], node: "node-b", lease_ms: 1,
                                                                   at: now + 3600))
        .to eq([false, false])
    end

    it "treats keys and fire times exactly (no prefix or separator confusion)" do
      pairs = [["a:1", now], ["a", now], ["a:1:#{now}", now], ["é ☃ job", now], ["a", now + 1], ["a", -5]]
      expect(claim(backend, pairs)).to eq([true] * pairs.size)
      expect(claim(other, pairs, node: "node-b")).to eq([false] * pairs.size)
      expect(backend.dispatches(key: "é ☃ job").first[:key]).to eq("é ☃ job")
    end

    it "claims a large batch in one call" do
      pairs = Array.new(3000) { |i| ["job-#{i % 300}", now + (i / 300) * 60] }
      expect(claim(backend, pairs)).to eq([true] * 3000)
      expect(claim(other, pairs.reverse, node: "node-b")).to eq([false] * 3000)
    end

    it "records the claim in the dispatch log" do
      claim(backend, [["job", now]], node: "node-a", at: now + 2)
      row = backend.dispatches(key: "job").first
      expect(row).to include(key: "job", fire_time: now, status: "claimed", node: "node-a", error: nil,
                             claimed_at: now + 2)
      expect(backend.dispatch_status("job", now)).to eq("claimed")
    end

    it "lets every pair be won exactly once under many threads and nodes" do
      pairs = Array.new(200) { |i| ["job-#{i % 20}", now + (i / 20) * 60] }
      results = in_threads(8) do |h, i|
        won = []
        pairs.shuffle(random: Random.new(i)).each_slice(25) do |slice|
          claim(h, slice, node: "node-#{i}").zip(slice).each { |ok, pair| won << pair if ok }
        end
        won
      end
      all = results.flatten(1)
      expect(all.size).to eq(200)
      expect(all.uniq.size).to eq(200)
      expect(all.sort).to eq(pairs.sort)
    end
  end

  describe "names" do
    # The SQL backends store these in VARCHAR(255) columns; every backend
    # refuses what one of them could not hold, so a name never works on one
    # backend and fails after a switch to another.
    it "refuses keys, node names and delayed job names over 255 characters or not UTF-8, storing nothing" do
      long = "x" * 256
      expect { claim(backend, [["ok", now], [long, now]]) }.to raise_error(ArgumentError, /job key is 256 characters long/)
      expect { claim(backend, [["bad \xFF".b, now]]) }.to raise_error(ArgumentError, /job key must be valid UTF-8/)
      expect { claim(backend, [["ok", now]], node: long) }.to raise_error(ArgumentError, /node is 256/)
      expect { backend.record(long, now, "failed", node: "n", now: now) }.to raise_error(ArgumentError, /job key/)
      expect { backend.set_enabled(long, false) }.to raise_error(ArgumentError, /job key/)
      expect { backend.heartbeat(long, nil, now: now, ttl: 60) }.to raise_error(ArgumentError, /node/)
      %i[job_id job_class queue].each do |field|
        args = { job_id: "j", run_at_ms: now * 1000, job_class: "Job", queue: "q", args_json: "[]" }
        expect { backend.delayed_add(**args, field => long) }.to raise_error(ArgumentError, /#{field} is 256/)
      end
      expect(backend.dispatches).to be_empty
      expect(backend.states).to be_empty
      expect(backend.delayed_count).to eq(0)
      expect(backend.nodes(since: 0)).to be_empty
      expect(claim(backend, [["ok", now], ["x" * 255, now], ["é" * 255, now]], node: "é" * 255)).to eq([true] * 3)
    end
  end

  describe "#record, #dispatches, #dispatch_status" do
    before do
      claim(backend, [["a", now], ["b", now], ["a", now + 60], ["c", now + 120]], node: "node-a")
      claim(other, [["b", now + 60]], node: "node-b")
      backend.record("a", now, "dispatched", node: "node-a", now: now + 1)
      backend.record("b", now, :failed, node: "node-a", error: "boom", now: now + 2)
      other.record("b", now + 60, "dispatched", node: "node-b", now: now + 61)
    end

    it "lists the log newest first" do
      rows = backend.dispatches
      expect(rows.size).to eq(5)
      expect(rows.map { |r| r[:fire_time] }).to eq([now + 120, now + 60, now + 60, now, now])
      expect(rows.first).to eq(key: "c", fire_time: now + 120, status: "claimed", node: "node-a",
                               error: nil, claimed_at: now, updated_at: now)
    end

    it "filters by key, status and node, and limits" do
      expect(backend.dispatches(key: "a").map { |r| r[:fire_time] }).to eq([now + 60, now])
      expect(backend.dispatches(status: "dispatched").map { |r| [r[:key], r[:fire_time]] })
        .to contain_exactly(["a", now], ["b", now + 60])
      expect(backend.dispatches(node: "node-b").map { |r| [r[:key], r[:fire_time]] }).to eq([["b", now + 60]])
      expect(backend.dispatches(key: "b", status: :failed, node: "node-a").size).to eq(1)
      expect(backend.dispatches(key: "a", status: "failed")).to eq([])
      expect(backend.dispatches(key: "nope")).to eq([])
      expect(backend.dispatches(limit: 2).map { |r| r[:fire_time] }).to eq([now + 120, now + 60])
    end

    it "pages through the log with a keyset cursor (before:), filters included" do
      claim(backend, [["a", now + 60 * 3], ["b", now + 60 * 3], ["c", now + 60 * 3], ["a", now + 60 * 4]], node: "node-a")
      everything = backend.dispatches(limit: 1000)
      expect(everything.size).to eq(9)
      [1, 2, 4].each do |size|
        pages = []
        page = backend.dispatches(limit: size)
        until page.empty?
          pages.concat(page)
          page = backend.dispatches(limit: size, before: page.last)
        end
        expect(pages).to eq(everything), "pages of #{size}"
      end
      expect(backend.dispatches(key: "a", limit: 1, before: [now + 60 * 3, "a"]).map { |r| r[:fire_time] }).to eq([now + 60])
      expect(backend.dispatches(key: "a", limit: 5, before: [now + 60, "a"]).map { |r| r[:fire_time] }).to eq([now])
      expect(backend.dispatches(status: "claimed", limit: 2, before: [now + 60 * 3, "b"]).map { |r| [r[:key], r[:fire_time]] })
        .to eq([["a", now + 60 * 3], ["c", now + 120]])
      expect(backend.dispatches(node: "node-b", before: [now + 60, "b"])).to eq([])
      expect(backend.dispatches(before: [now, "a"])).to eq([])
      expect { backend.dispatches(before: "x") }.to raise_error(ArgumentError, /before/)
      expect { backend.dispatches(before: [now, ""]) }.to raise_error(ArgumentError, /before key/)
    end

    it "records many outcomes at once like #record (#record_many)" do
      backend.record_many([["a", now + 60, "failed", RuntimeError.new("boom")], ["c", now + 120, :dispatched, nil],
                           ["new", now, "dispatched", nil], ["c", now + 120, "failed", "second thought"]],
                          node: "node-c", now: now + 200)
      a = backend.dispatches(key: "a", limit: 1).first
      expect(a).to include(status: "failed", node: "node-c", error: "RuntimeError: boom", claimed_at: now, updated_at: now + 200)
      expect(backend.dispatches(key: "c").map { |r| r.values_at(:status, :error) }).to eq([["failed", "second thought"]])
      expect(backend.dispatches(key: "new").first).to include(status: "dispatched", node: "node-c", claimed_at: now + 200)
      expect(backend.dispatch_status("b", now)).to eq("failed") # untouched
      many = Array.new(1_234) { |i| ["m-\"{},é-#{i}", now + i, i.even? ? "dispatched" : "failed", i.even? ? nil : "e\\#{i}"] }
      backend.record_many(many, node: "node-c", now: now + 300)
      expect(backend.dispatches(limit: 2_000).count { |r| r[:key].start_with?("m-") }).to eq(1_234)
      expect(backend.dispatches(key: many[7][0]).first).to include(status: "failed", error: "e\\7")
      expect(backend.record_many([], node: "n", now: now)).to be_nil
      expect { backend.record_many([["a", now, "claimed", nil]], node: "n", now: now) }.to raise_error(ArgumentError, /status/)
      expect { backend.record_many([["a", now]], node: "n", now: now) }.to raise_error(ArgumentError, /outcome/)
      expect { backend.record_many([["x" * 256, now, "failed", nil]], node: "n", now: now) }.to raise_error(ArgumentError, /job key/)
    end

    it "gives the latest logged fire time per key, for many keys at once (#latest_fires)" do
      expect(backend.latest_fires(%w[a b c nope a])).to eq([now + 60, now + 60, now + 120, nil, now + 60])
      expect(other.latest_fires([:c])).to eq([now + 120])
      expect(backend.latest_fires([])).to eq([])
      # more keys than one batch, with odd bytes in them
      keys = Array.new(2_345) { |i| "k\"\\ ,{}é-#{i}" }
      claim(backend, keys.each_with_index.select { |_, i| i.odd? }.map { |k, i| [k, now + i] }, node: "node-a")
      expected = keys.each_index.map { |i| i.odd? ? now + i : nil }
      expect(backend.latest_fires(keys)).to eq(expected)
      expect(backend.latest_fires(keys.first(3) + ["b"])).to eq(expected.first(3) + [now + 60])
      expect { backend.latest_fires("a") }.to raise_error(ArgumentError, /Array/)
      expect { backend.latest_fires(["a", ""]) }.to raise_error(ArgumentError, /key/)
      expect { backend.latest_fires(["a", 5]) }.to raise_error(ArgumentError, /key must be a String/)
    end

    it "keeps claimed_at, sets updated_at and the error" do
      row = backend.dispatches(key: "b", status: "failed").first
      expect(row).to include(status: "failed", error: "boom", node: "node-a", claimed_at: now,
                             updated_at: now + 2)
    end

    it "stores any error text as UTF-8: bad bytes replaced, NUL bytes dropped, other encodings converted" do
      claim(backend, [["e1", now], ["e2", now], ["e3", now]])
      backend.record("e1", now, "failed", node: "n", error: "boom \xFF\0 end".b, now: now)
      backend.record("e2", now, "failed", node: "n", error: "caf\xE9".dup.force_encoding(Encoding::ISO_8859_1), now: now)
      backend.record("e3", now, "failed", node: "n", error: "x" * 4100 + "é", now: now)
      errors = %w[e1 e2 e3].map { |k| backend.dispatches(key: k).first[:error] }
      expect(errors[0]).to eq("boom \uFFFD end")
      expect(errors[1]).to eq("café")
      expect(errors[2]).to eq("x" * 4000)
      expect(errors).to all(satisfy { |e| e.encoding == Encoding::UTF_8 && e.valid_encoding? })
    end

    it "answers dispatch_status" do
      expect(backend.dispatch_status("a", now)).to eq("dispatched")
      expect(other.dispatch_status("b", Time.at(now))).to eq("failed")
      expect(backend.dispatch_status("a", now + 60)).to eq("claimed")
      expect(backend.dispatch_status("a", now + 1)).to be_nil
      expect(backend.dispatch_status("zzz", now)).to be_nil
    end

    it "rejects bad arguments with ArgumentError" do
      expect { backend.record("a", now, "claimed", node: "n", now: now) }.to raise_error(ArgumentError, /status/)
      expect { backend.dispatches(status: "bogus") }.to raise_error(ArgumentError, /status/)
      expect { backend.dispatches(limit: 0) }.to raise_error(ArgumentError, /limit/)
      expect { claim(backend, [["a"]]) }.to raise_error(ArgumentError, /pairs\[0\]/)
      expect { claim(backend, [["a", "soon"]]) }.to raise_error(ArgumentError, /fire_time/)
      expect { claim(backend, [["a", now]], lease_ms: 0) }.to raise_error(ArgumentError, /lease_ms/)
    end
  end

  describe "#cleanup" do
    it "deletes rows older than before, at most limit per call" do
      claim(backend, Array.new(10) { |i| ["job", now + i] })
      expect(backend.cleanup(before: now + 5, limit: 3)).to eq(3)
      expect(backend.cleanup(before: now + 5, limit: 100)).to eq(2)
      expect(backend.cleanup(before: now + 5)).to eq(0)
      expect(backend.dispatches(key: "job").map { |r| r[:fire_time] }).to eq((5..9).map { |i| now + i }.reverse)
      expect(backend.cleanup(before: Time.at(now + 100))).to eq(5)
      expect(backend.dispatches).to eq([])
    end
  end

  describe "#set_enabled and #states" do
    it "persists overrides that every node sees" do
      expect(backend.states).to eq({})
      backend.set_enabled("a", false)
      backend.set_enabled("b", true)
      expect(other.states).to eq("a" => false, "b" => true)
      other.set_enabled("a", true)
      expect(backend.states).to eq("a" => true, "b" => true)
    end
  end

  describe "namespaces" do
    it "isolate claims, the log, states, delayed jobs and nodes" do
      claim(backend, [["job", now]])
      backend.set_enabled("job", false)
      backend.delayed_add(job_id: "j1", run_at_ms: 1, job_class: "Job", args_json: "[]")
      backend.heartbeat("node-a", nil, now: now, ttl: 60)
      elsewhere = backend_factory.call(unique_namespace("other"))
      expect(claim(elsewhere, [["job", now]])).to eq([true])
      expect(elsewhere.dispatches.size).to eq(1)
      expect(elsewhere.states).to eq({})
      expect(elsewhere.delayed_count).to eq(0)
      expect(elsewhere.delayed_claim(now_ms: 10**13, limit: 10)).to eq([])
      expect(elsewhere.nodes(since: 0)).to eq([])
      expect(elsewhere.cleanup(before: now + 1)).to eq(1)
      expect(backend.dispatch_status("job", now)).to eq("claimed")
      expect(backend.delayed_count).to eq(1)
    end

    # MySQL's INSERT IGNORE cut a longer one short and lost every claim;
    # every backend refuses it, as it refuses such a job key.
    it "over 255 characters are refused where the handle is built, naming the limit" do
      expect { backend_factory.call("n" * 256) }
        .to raise_error(Kaal::ConfigurationError, /namespace: is 256 characters long; at most 255 fit/)
      expect { Kaal::Native::Backend.new(kaal_backend_kind.to_s, "é" * 256, {}) }
        .to raise_error(ArgumentError, /#{kaal_backend_kind}: namespace is 256 characters long; at most 255 fit/)
      longest = backend_factory.call((unique_namespace + "é" * 255)[0, 255])
      expect(claim(longest, [["job", now]])).to eq([true])
      expect(longest.cleanup(before: now + 1)).to eq(1)
    end
  end

  describe "delayed jobs" do
    def add(handle, id, run_at_ms, job_class: "Job", queue: nil, args_json: "[]")
      handle.delayed_add(job_id: id, run_at_ms: run_at_ms, job_class: job_class, queue: queue,
                         args_json: args_json)
    end

    it "adds, counts and lists soonest first" do
      expect(add(backend, "late", 3000, queue: "low", args_json: '[1,"é",{"a":null}]')).to be(true)
      add(backend, "early", 1000)
      add(other, "mid", 2000)
      expect(backend.delayed_count).to eq(3)
      expect(backend.delayed_list.map { |j| j[:job_id] }).to eq(%w[early mid late])
      expect(backend.delayed_list(limit: 2).map { |j| j[:job_id] }).to eq(%w[early mid])
      expect(backend.delayed_list.last).to eq(job_id: "late", run_at_ms: 3000, job_class: "Job", queue: "low",
                                              args_json: '[1,"é",{"a":null}]')
    end

    it "pages through pending jobs with a keyset cursor (after:)" do
      add(backend, "b", 2000)
      add(backend, "a", 2000)
      add(backend, "c", 2000)
      add(other, "z", 1000)
      add(backend, "y", 3000)
      everything = backend.delayed_list(limit: 100)
      expect(everything.map { |j| j[:job_id] }).to eq(%w[z a b c y])
      [1, 2, 3].each do |size|
        seen = []
        page = backend.delayed_list(limit: size)
        until page.empty?
          seen.concat(page)
          page = backend.delayed_list(limit: size, after: page.last)
        end
        expect(seen).to eq(everything), "pages of #{size}"
      end
      expect(backend.delayed_list(after: [2000, "a"]).map { |j| j[:job_id] }).to eq(%w[b c y])
      expect(backend.delayed_list(after: [3000, "y"])).to eq([])
      expect { backend.delayed_list(after: 5) }.to raise_error(ArgumentError, /after/)
    end

    it "refuses a pending job_id with DuplicateJobError and changes nothing" do
      add(backend, "j1", 1000, job_class: "First")
      expect { add(other, "j1", 5, job_class: "Second") }.to raise_error(Kaal::DuplicateJobError, /j1/)
      expect(backend.delayed_count).to eq(1)
      expect(backend.delayed_list).to eq([{ job_id: "j1", run_at_ms: 1000, job_class: "First", queue: nil,
                                            args_json: "[]" }])
    end

    it "claims only due jobs, oldest first, up to limit, and removes them" do
      add(backend, "c", 3000)
      add(backend, "a", 1000)
      add(backend, "b", 2000)
      add(backend, "future", 9000)
      expect(backend.delayed_claim(now_ms: 500, limit: 10)).to eq([])
      expect(backend.delayed_claim(now_ms: 3000, limit: 2).map { |j| j[:job_id] }).to eq(%w[a b])
      expect(other.delayed_claim(now_ms: 3000, limit: 10).map { |j| j[:job_id] }).to eq(%w[c])
      expect(backend.delayed_claim(now_ms: 3000, limit: 10)).to eq([])
      expect(backend.delayed_count).to eq(1)
      expect(backend.delayed_list.map { |j| j[:job_id] }).to eq(%w[future])
    end

    it "orders jobs due at the same time by job_id, byte by byte, in list and claim" do
      %w[b-2 B-1 a-3 é-0 a-10].each { |id| add(backend, id, 1000) }
      expected = %w[B-1 a-10 a-3 b-2 é-0] # byte order, not a locale's
      expect(backend.delayed_list.map { |j| j[:job_id] }).to eq(expected)
      expect(backend.delayed_claim(now_ms: 1000, limit: 2).map { |j| j[:job_id] }).to eq(expected.first(2))
      expect(backend.delayed_claim(now_ms: 1000, limit: 10).map { |j| j[:job_id] }).to eq(expected.drop(2))
    end

    it "accepts a job_id again once the job is no longer pending" do
      add(backend, "j1", 1000)
      backend.delayed_claim(now_ms: 1000, limit: 1)
      expect(add(backend, "j1", 2000)).to be(true)
      expect(backend.delayed_list.map { |j| j[:run_at_ms] }).to eq([2000])
    end

    it "cancels a pending job" do
      add(backend, "j1", 1000)
      add(backend, "j2", 2000)
      expect(other.delayed_cancel("j1")).to be(true)
      expect(backend.delayed_cancel("j1")).to be(false)
      expect(backend.delayed_cancel("never")).to be(false)
      expect(backend.delayed_count).to eq(1)
      expect(backend.delayed_claim(now_ms: 5000, limit: 10).map { |j| j[:job_id] }).to eq(%w[j2])
    end

    it "hands each due job to exactly one of many claimers" do
      500.times { |i| add(backend, "job-#{i}", 1000 + (i % 50)) }
      results = in_threads(8) do |h, _|
        got = []
        loop do
          batch = h.delayed_claim(now_ms: 2000, limit: 25)
          break if batch.empty?

          got.concat(batch.map { |j| j[:job_id] })
        end
        got
      end
      all = results.flatten
      expect(all.size).to eq(500)
      expect(all.uniq.size).to eq(500)
      expect(backend.delayed_count).to eq(0)
    end
  end

  describe "heartbeats" do
    it "lists nodes seen since a time, by node id, with their info" do
      backend.heartbeat("node-b", '{"pid":2}', now: now, ttl: 3600)
      other.heartbeat("node-a", nil, now: now + 100, ttl: 3600)
      expect(backend.nodes(since: now + 50)).to eq([{ node: "node-a", info: nil, last_seen: now + 100 }])
      expect(other.nodes(since: Time.at(now - 1)).map { |n| n[:node] }).to eq(%w[node-a node-b])
      backend.heartbeat("node-b", '{"pid":3}', now: now + 200, ttl: 3600)
      expect(backend.nodes(since: now + 150)).to eq([{ node: "node-b", info: '{"pid":3}', last_seen: now + 200 }])
    end
  end

  describe "fork safety" do
    it "reconnects in a forked child without disturbing the parent's session" do
      skip "fork is not available" unless Process.respond_to?(:fork)

      expect(claim(backend, [["parent", now]])).to eq([true])
      expect(in_fork { claim(backend, [["child", now]], node: "child").inspect }).to eq("[true]")
      # The parent's session still works and is in step.
      expect(claim(backend, [["parent", now], ["parent-2", now]])).to eq([false, true])
      expect(backend.dispatch_status("child", now)).to eq("claimed") if separate_handles
    end
  end
end

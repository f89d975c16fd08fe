# frozen_string_literal: true

require "spec_helper"

# The C primitives accept a Symbol wherever they take a name or text and use
# its String; they once read the Symbol itself as a String and crashed the
# process ([BUG] Segmentation fault).
%i[memory sqlite redis postgres mysql].each do |kind|
  RSpec.describe "Kaal::Native::Backend primitives given Symbols (#{kind})" do
    kaal_backend_for kind

    let(:backend) { backend_factory.call(unique_namespace) }
    let(:now) { 1_767_225_600 }

    it "claims with a Symbol node (pairs and columns)" do
      expect(backend.send(:_claim, [[:a_job, now]], 60_000, :"node-1", now)).to eq([true])
      expect(backend.send(:_claim_columns, [:b_job], [now], 60_000, :"node-1", now)).to eq([true])
      expect(backend.dispatches(key: "a_job").map { |r| r[:node] }).to eq(["node-1"])
    end

    it "records with a Symbol error and node" do
      backend.claim([["job", now]], lease_ms: 60_000, node: "n", now: now)
      backend.send(:_record, :job, now, :failed, :n, :boom, now)
      row = backend.dispatches(key: "job").first
      expect(row.values_at(:status, :node, :error)).to eq(%w[failed n boom])
    end

    # The primitives check the outcome themselves (the Ruby wrappers do too).
    it "refuses an outcome other than dispatched or failed in record and record_many" do
      backend.claim([["job", now]], lease_ms: 60_000, node: "n", now: now)
      message = 'status must be "dispatched" or "failed"'
      expect { backend.send(:_record, "job", now, "claimed", "n", nil, now) }
        .to raise_error(ArgumentError, message)
      expect { backend.send(:_record_many, [["job", now, "done", nil]], "n", now) }
        .to raise_error(ArgumentError, message)
      expect(backend.dispatch_status("job", now)).to eq("claimed")
    end

    it "stores a delayed job with Symbol arguments" do
      backend.send(:_delayed_add, :j1, 1000, :Worker, :default, :"[1]")
      expect(backend.delayed_claim(now_ms: 1000, limit: 10))
        .to eq([{ job_id: "j1", run_at_ms: 1000, job_class: "Worker", queue: "default", args_json: "[1]" }])
      expect(backend.send(:_delayed_cancel, :j1)).to be(false)
    end

    it "heartbeats with a Symbol node and info" do
      backend.send(:_heartbeat, :"node-1", :"{}", now, 60)
      expect(backend.nodes(since: now)).to eq([{ node: "node-1", info: "{}", last_seen: now }])
    end
  end
end

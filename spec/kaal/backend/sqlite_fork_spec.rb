# frozen_string_literal: true

require "securerandom"
require "tmpdir"

# A handle opened before fork() (an app server preloading the app) and used
# in the child: the child must get a session of its own whose writes are
# durable, even when the parent closes its connection meanwhile. SQLite keeps
# per-file lock state per process, so a parent's connection merely leaked in
# the child would leave the child's new connection without real file locks,
# and the parent, believing itself the last user, would checkpoint and delete
# the WAL the child is still writing to.
RSpec.describe "SQLite backend across fork" do
  kaal_backend_for :sqlite

  let(:ns) { unique_namespace }

  it "keeps every claim the child made after the parent closed its connection" do
    backend = backend_factory.call(ns)
    expect(backend.claim([["parent", 1]], lease_ms: 1000, node: "parent", now: 1)).to eq([true])

    step_r, step_w = IO.pipe # child -> parent: "first batch written"
    go_r, go_w = IO.pipe     # parent -> child: "parent closed, write again"
    pid = fork do
      step_r.close
      go_w.close
      ok = backend.claim(Array.new(20) { |i| ["child-a", 100 + i] }, lease_ms: 1000, node: "child", now: 2)
      step_w.write(ok.all? ? "a" : "x")
      step_w.close
      go_r.read
      ok = backend.claim(Array.new(20) { |i| ["child-b", 200 + i] }, lease_ms: 1000, node: "child", now: 3)
      exit!(ok.all? ? 0 : 1)
    end
    step_w.close
    go_r.close
    expect(step_r.read).to eq("a")
    backend.close # the parent's last connection goes away while the child still has its own
    go_w.close
    Process.wait(pid)
    expect($?.exitstatus).to eq(0)

    reopened = backend_factory.call(ns)
    keys = reopened.dispatches(limit: 100).map { |r| r[:key] }.tally
    expect(keys).to eq("parent" => 1, "child-a" => 20, "child-b" => 20)
  end
end

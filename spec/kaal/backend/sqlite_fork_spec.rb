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

  # use_inherited: the child goes on with the parent's handle (which then
  # reconnects); otherwise it builds a new handle and never touches the old one.
  def run_fork_scenario(use_inherited:)
    backend = backend_factory.call(ns)
    expect(backend.claim([["parent", 1]], lease_ms: 1000, node: "parent", now: 1)).to eq([true])

    step_r, step_w = IO.pipe # child -> parent: "first batch written"
    go_r, go_w = IO.pipe     # parent -> child: "parent closed, write again"
    pid = fork do
      step_r.close
      go_w.close
      backend = backend_factory.call(ns) unless use_inherited
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
    reopened.dispatches(limit: 100).map { |r| r[:key] }.tally
  end

  it "keeps every claim the child made on the inherited handle after the parent closed" do
    expect(run_fork_scenario(use_inherited: true)).to eq("parent" => 1, "child-a" => 20, "child-b" => 20)
  end

  it "keeps every claim the child made on a new handle while the inherited one sat unused" do
    expect(run_fork_scenario(use_inherited: false)).to eq("parent" => 1, "child-a" => 20, "child-b" => 20)
  end
end

# frozen_string_literal: true

# Claim batches of every shape on SQLite: the backend splits large batches
# into several padded INSERT statements inside one transaction and maps the
# RETURNING rows back to the input; the answer must still be exact, pair by
# pair, in input order.
RSpec.describe "SQLite claim batches" do
  kaal_backend_for :sqlite

  let(:backend) { backend_factory.call(unique_namespace) }

  [1, 3, 33, 100, 600, 1000, 4097, 9000].each do |size|
    it "answers a batch of #{size} pairs exactly, with repeats and already-claimed pairs mixed in" do
      rng = Random.new(size)
      pairs = Array.new(size) { |i| ["job-#{rng.rand(size)}-#{i % 7}", 1_800_000_000 + rng.rand(5)] }
      taken = pairs.sample(size / 3, random: rng).uniq
      expect(backend.claim(taken, lease_ms: 60_000, node: "earlier", now: 1)).to all(be(true))

      result = backend.claim(pairs, lease_ms: 60_000, node: "now", now: 2)

      seen = taken.to_h { |p| [p, true] }
      expected = pairs.map { |p| seen[p] ? false : (seen[p] = true) }
      expect(result).to eq(expected)
      expect(backend.dispatches(node: "now", limit: size + 1).size).to eq(expected.count(true))
      expect(backend.claim(pairs, lease_ms: 60_000, node: "again", now: 3)).to all(be(false))
    end
  end
end

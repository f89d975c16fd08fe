# frozen_string_literal: true

# Kaal::JobQueue: the scheduler's jobs by next fire time. The tick relies on
# pop_due handing over every due job once, earliest epoch first and each
# epoch's jobs in key order, whatever mix of push and push_all built it.
RSpec.describe Kaal::JobQueue do
  QueuedJob = Struct.new(:key, :next_epoch) # next_epoch: the model's, handed to the queue

  def drain(queue, hi)
    out = []
    queue.pop_due(hi) { |epoch, jobs| out << [epoch, jobs.map(&:key)] }
    out
  end

  it "yields due buckets earliest first, each in key order, and keeps the rest" do
    q = described_class.new
    [["b", 20], ["a", 20], ["c", 10], ["d", 30]].each { |k, e| q.push(QueuedJob.new(k, e), e) }
    expect(drain(q, 20)).to eq([[10, ["c"]], [20, %w[a b]]])
    expect(q.size).to eq(1)
    expect(q.next_epoch).to eq(30)
  end

  it "agrees with a sort of everything after random pushes, put-backs and pops" do
    rng = Random.new(42)
    q = described_class.new
    model = []
    300.times do |round|
      if rng.rand < 0.5
        job = QueuedJob.new("k#{rng.rand(1000)}-#{round}", rng.rand(50))
        q.push(job, job.next_epoch)
        model << job
      else
        hi = rng.rand(50)
        got = []
        q.pop_due(hi) { |epoch, jobs| got << [epoch, jobs.dup] }
        due = model.select { |j| j.next_epoch <= hi }
        model -= due
        expected = due.group_by(&:next_epoch).sort.map { |e, js| [e, js.map(&:key).sort] }
        expect(got.map { |e, js| [e, js.map(&:key)] }).to eq(expected)
        # put each bucket back as the tick does, at new epochs
        got.each do |_, jobs|
          jobs.each { |j| j.next_epoch = hi + 1 + rng.rand(3) }
          q.push_all(jobs, jobs.map(&:next_epoch))
          model.concat(jobs)
        end
      end
      expect(q.size).to eq(model.size)
    end
  end

  it "takes jobs placed in registration order (push_placed) in key order, with later pushes" do
    q = described_class.new
    q.push(QueuedJob.new("k5", 20), 20)
    q.push_placed({ 10 => %w[k3 k1 k2].map { |k| QueuedJob.new(k, 10) },
                    20 => %w[k9 k7 k8].map { |k| QueuedJob.new(k, 20) } })
    q.push(QueuedJob.new("k0", 20), 20)
    expect(q.size).to eq(8)
    expect(drain(q, 20)).to eq([[10, %w[k1 k2 k3]], [20, %w[k0 k5 k7 k8 k9]]])
    expect(q).to be_empty
  end

  it "puts a taken bucket back at its epoch (push_at) and yields each job with its epoch" do
    q = described_class.new
    %w[a b c].each { |k| q.push(QueuedJob.new(k, 5), 5) }
    taken = []
    q.pop_due(5) { |epoch, jobs| taken << [epoch, jobs] }
    q.push(QueuedJob.new("0", 5), 5)
    q.push_at(5, taken[0][1])
    expect(q.size).to eq(4)
    expect(q.each_with_epoch.to_a.map { |job, epoch| [job.key, epoch] }.sort).to eq([["0", 5], ["a", 5], ["b", 5], ["c", 5]])
    expect(drain(q, 5)).to eq([[5, %w[0 a b c]]])
  end
end

# frozen_string_literal: true

require "spec_helper"

# Registry#register_all: the jobs #register would take, in one step (one
# generation bump); the ones it would refuse come back with its message.
# Registry#stored_job / #stored_jobs: the stored schedules' jobs it holds.
RSpec.describe Kaal::Registry, "#register_all and the stored jobs" do
  subject(:registry) { described_class.new }

  def job(key, source: :stored, cron: "0 9 * * *")
    Kaal::Job.new(key: key, cron: cron, job_class: "SomeJob", location: "#{source} #{key}", source: source)
  end

  it "registers every job with one generation bump" do
    before = registry.generation
    jobs = %w[a b c].map { |k| job(k) }
    expect(registry.register_all(jobs, policy: :error)).to eq([])
    expect(registry.jobs.values).to eq(jobs)
    expect(registry.generation).to eq(before + 1)
    expect(registry.register_all([], policy: :error)).to eq([])
    expect(registry.generation).to eq(before + 1)
  end

  it "refuses what #register refuses, with the same messages, and takes the rest" do
    registry.register(job("code", source: :code), policy: :error)
    registry.replace_file_jobs([job("file", source: :file)], "kaal-scheduler.yml", policy: :error)
    frozen = registry.jobs # handed out: not changed afterwards
    messages = %w[code file].map do |key|
      probe = described_class.new
      probe.register(job("code", source: :code), policy: :error)
      probe.replace_file_jobs([job("file", source: :file)], "kaal-scheduler.yml", policy: :error)
      probe.register(job(key), policy: :error)
    rescue Kaal::ConfigurationError => e
      e.message
    end
    fresh = job("fresh")
    refused = registry.register_all([job("code"), fresh, job("file")], policy: :error)
    expect(refused.map { |j, e| [j.key, e.class, e.message] })
      .to eq([["code", Kaal::ConfigurationError, messages[0]], ["file", Kaal::ConfigurationError, messages[1]]])
    expect(registry.jobs.keys).to contain_exactly("code", "file", "fresh")
    expect(registry["fresh"]).to equal(fresh)
    expect(frozen.keys).to contain_exactly("code", "file")
  end

  it "follows scheduler_conflict_policy for a key in the scheduler file" do
    file_job = job("k", source: :file)
    registry.replace_file_jobs([file_job], "kaal-scheduler.yml", policy: :file_wins)
    stored = job("k")
    expect(registry.register_all([stored], policy: :file_wins)).to eq([])
    expect(registry["k"]).to equal(file_job)
    registry.unregister("k", policy: :file_wins)
    expect(registry.register_all([stored], policy: :code_wins)).to eq([])
    expect(registry["k"]).to equal(stored)
  end

  it "tells the stored schedules' jobs from the code and file jobs, in force or not" do
    code = job("code", source: :code)
    registry.register(code, policy: :error)
    file_job = job("both", source: :file)
    registry.replace_file_jobs([file_job], "kaal-scheduler.yml", policy: :file_wins)
    hidden = job("both")
    stored = job("s")
    registry.register_all([hidden, stored], policy: :file_wins)
    expect(registry["both"]).to equal(file_job) # the file wins, the stored job is still registered
    expect(registry.stored_job("both")).to equal(hidden)
    expect(registry.stored_job("s")).to equal(stored)
    expect(registry.stored_job("code")).to be_nil
    expect(registry.stored_job("nope")).to be_nil
    expect(registry.stored_jobs).to eq("both" => hidden, "s" => stored)
  end

  # Both ways #register_all makes the jobs in force (an insert per job, or
  # one copy for a batch as big as the table next to a scheduler file) give
  # what #register one job at a time gives.
  it "leaves the same jobs in force as #register one at a time, for a small or a big batch" do
    %i[error code_wins file_wins].each do |policy|
      [2, 12].each do |batch_size|
        copy_expected = batch_size == 12
        file_jobs = [job("both-old", source: :file), job("f1", source: :file), job("f-new", source: :file)]
        # 7 code jobs: a batch of 3 takes an insert per job, one of 13 the copy
        code_jobs = [job("both-old", source: :code)] + Array.new(6) { |i| job("c#{i}", source: :code) }
        one_by_one, at_once = Array.new(2) do
          r = described_class.new
          r.replace_file_jobs(file_jobs, "kaal-scheduler.yml", policy: :code_wins)
          code_jobs.each { |j| r.register(j, policy: :code_wins) } # in force for both-old: the code job
          r
        end
        batch = Array.new(batch_size) { |i| job("s#{i}") }
        batch.insert(1, job("f-new")) # a key of the file
        refused_one = batch.filter_map do |j|
          one_by_one.register(j, policy: policy)
          nil
        rescue Kaal::ConfigurationError => e
          [j.key, e.message]
        end
        allow(at_once).to receive(:in_force).and_call_original
        refused_all = at_once.register_all(batch, policy: policy).map { |j, e| [j.key, e.message] }
        expect(at_once).to have_received(:in_force).exactly(copy_expected ? 1 : 0).times
        expect(refused_all).to eq(refused_one)
        expect(at_once.jobs.transform_values(&:object_id)).to eq(one_by_one.jobs.transform_values(&:object_id))
        expect(at_once.jobs.keys.sort).to eq(one_by_one.jobs.keys.sort)
        at_once.register(job("later"), policy: policy) # the table in force is its own, not the code table
        expect(at_once.jobs.keys).to include("later")
        expect(at_once.stored_jobs.keys).to include("later")
      end
    end
  end
end

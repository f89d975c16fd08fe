# frozen_string_literal: true

require_relative "runtime_helper"

# A delayed job for the specs.
module SpecDelayed
  class ReminderJob
    RUNS = Queue.new

    def self.perform(*args)
      RUNS << args
    end

    def self.drain
      out = []
      out << RUNS.pop until RUNS.empty?
      out
    end
  end
end

RSpec.describe "Delayed jobs (Kaal.enqueue_at)" do
  include KaalRuntimeHelper

  let(:t0) { at("2026-08-01T09:00:00") }

  before { Kaal.configure { |c| c.enable_dispatch_recovery = false } }
  after { SpecDelayed::ReminderJob.drain }

  def enqueue(**overrides)
    Kaal.enqueue_at(at: Time.at(t0 + 5), job_class: "SpecDelayed::ReminderJob", args: [42, "x"], job_id: "r:42",
                    **overrides)
  end

  it "stores the job and dispatches it once when due, with the same rules as recurring jobs" do
    expect(enqueue(queue: :mailers)).to eq("r:42")
    expect(Kaal.backend.delayed_count).to eq(1)
    expect(Kaal.tick!(now: t0 + 4)).to be_empty
    result = Kaal.tick!(now: t0 + 5)
    expect(result.map { |d| [d.job_id, d.job_class, d.queue, d.status] })
      .to eq([["r:42", "SpecDelayed::ReminderJob", "mailers", "dispatched"]])
    expect(SpecDelayed::ReminderJob.drain).to eq([[42, "x"]])
    expect(Kaal.tick!(now: t0 + 6)).to be_empty
    expect(Kaal.backend.delayed_count).to eq(0)
    expect(log_io.string).to include("delayed r:42 (SpecDelayed::ReminderJob) dispatched in")
  end

  it "stores a Class by its name" do
    Kaal.enqueue_at(at: t0, job_class: SpecDelayed::ReminderJob, args: [], job_id: "c")
    expect(Kaal.backend.delayed_list.first).to include(job_class: "SpecDelayed::ReminderJob")
  end

  it "raises DuplicateJobError for a pending job_id and changes nothing" do
    enqueue
    expect { enqueue(args: [1], at: t0 + 100) }.to raise_error(Kaal::DuplicateJobError)
    expect(Kaal.backend.delayed_list.map { |j| [j[:job_id], j[:args_json]] }).to eq([["r:42", '[42,"x"]']])
    Kaal.tick!(now: t0 + 5)
    expect { enqueue }.not_to raise_error # no longer pending
  end

  it "cancels a pending job" do
    enqueue
    expect(Kaal.cancel("r:42")).to be(true)
    expect(Kaal.cancel("r:42")).to be(false)
    expect(Kaal.tick!(now: t0 + 10)).to be_empty
  end

  describe "arguments are checked at enqueue" do
    it "refuses keyword arguments (a Hash), naming the problem" do
      expect { enqueue(args: { user: 1 }) }.to raise_error(ArgumentError, /positional arguments only .* got a Hash/)
      expect { enqueue(args: [1, { "a" => 1 }]) }.to raise_error(ArgumentError, /args\[1\]: .*positional arguments only/)
    end

    it "refuses values that do not survive a JSON round trip, naming the value" do
      expect { enqueue(args: [:sym]) }.to raise_error(ArgumentError, /args\[0\]: :sym \(Symbol\) does not survive a JSON round trip/)
      expect { enqueue(args: [Time.at(0)]) }.to raise_error(ArgumentError, /args\[0\]: .*\(Time\) does not survive/)
      expect { enqueue(args: [1, Float::NAN]) }.to raise_error(ArgumentError, /args\[1\]: NaN cannot be stored as JSON/)
      expect { enqueue(args: [[1, Object.new]]) }.to raise_error(ArgumentError, /args\[0\]\[1\]: .*Object/)
      expect { enqueue(args: [[{ a: 1 }]]) }.to raise_error(ArgumentError, /Hash key :a \(Symbol\)/)
      expect(Kaal.backend.delayed_count).to eq(0)
    end

    it "accepts JSON-safe values and dispatches them unchanged" do
      args = ["é", 1, 2.5, nil, true, [1, [2]], [{ "k" => [1, nil] }]]
      enqueue(args: args)
      Kaal.tick!(now: t0 + 5)
      expect(SpecDelayed::ReminderJob.drain).to eq([args])
    end

    it "refuses anonymous classes, bad names, empty job ids and bad times" do
      expect { enqueue(job_class: Class.new) }.to raise_error(ArgumentError, /anonymous/)
      expect { enqueue(job_class: "system('x')") }.to raise_error(ArgumentError, /not a constant name/)
      expect { enqueue(job_id: "") }.to raise_error(ArgumentError, /job_id: must be a non-empty String/)
      expect { enqueue(at: "tomorrow") }.to raise_error(ArgumentError, /at: must be a Time/)
    end

    it "refuses a job_id, class name or queue that a backend column cannot hold" do
      expect { enqueue(job_id: "j" * 256) }.to raise_error(ArgumentError, /job_id: is 256 characters long; at most 255/)
      expect { enqueue(job_id: "a\0b") }.to raise_error(ArgumentError, /job_id: must not contain NUL bytes/)
      expect { enqueue(job_id: "\xff".b) }.to raise_error(ArgumentError, /job_id: must be valid UTF-8/)
      expect { enqueue(queue: "q" * 256) }.to raise_error(ArgumentError, /queue: is 256 characters long/)
      expect { enqueue(job_class: "A#{"b" * 255}") }.to raise_error(ArgumentError, /job_class: is 256 characters long/)
      expect(Kaal.backend.delayed_count).to eq(0)
    end
  end

  describe "delayed_job_allowed_class_prefixes" do
    it "is checked at enqueue" do
      Kaal.configure { |c| c.delayed_job_allowed_class_prefixes = %w[Mailers::] }
      expect { enqueue }.to raise_error(ArgumentError, /outside delayed_job_allowed_class_prefixes \(Mailers::\)/)
    end

    it "is checked again at dispatch (a stored name written by another app)" do
      Kaal.configure { |c| c.delayed_job_allowed_class_prefixes = %w[Mailers::] }
      Kaal.backend.delayed_add(job_id: "evil", run_at_ms: t0 * 1000, job_class: "SpecDelayed::ReminderJob",
                               queue: nil, args_json: "[]")
      result = Kaal.tick!(now: t0 + 1)
      expect(result.map { |d| [d.job_id, d.status] }).to eq([%w[evil failed]])
      expect(result.first.error).to include("outside delayed_job_allowed_class_prefixes")
      expect(SpecDelayed::ReminderJob.drain).to be_empty
    end
  end

  it "sweeps a backlog bigger than one batch in a single tick" do
    Kaal.configure { |c| c.delayed_batch_size = 7 }
    25.times { |i| Kaal.enqueue_at(at: t0, job_class: SpecDelayed::ReminderJob, args: [i], job_id: "b#{i}") }
    expect(Kaal.tick!(now: t0 + 1).size).to eq(25)
    expect(SpecDelayed::ReminderJob.drain.flatten.sort).to eq((0...25).to_a)
    expect(Kaal.backend.delayed_count).to eq(0)
  end

  it "needs an SQL backend for connection:" do
    expect { enqueue(connection: Object.new) }.to raise_error(Kaal::ConfigurationError, /needs an SQL backend/)
  end
end

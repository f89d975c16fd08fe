# frozen_string_literal: true

require "spec_helper"
require "active_record"

# Which errors of an Active Record hand-off are the store's (the tick fails
# closed, the pair is tried again) and which are the job's (the pair is
# recorded failed, the other jobs go on).
RSpec.describe Kaal::Handoff::ActiveRecord do
  def raised(error, cause: nil)
    raise cause if cause

    raise error
  rescue StandardError
    begin
      raise error
    rescue StandardError => e
      return e
    end
  end

  it "treats an unreachable, locked or timed-out database as the store's" do
    expect(described_class.store_error?(ActiveRecord::ConnectionNotEstablished.new("gone"))).to be(true)
    expect(described_class.store_error?(ActiveRecord::LockWaitTimeout.new("locked"))).to be(true)
    expect(described_class.store_error?(ActiveRecord::StatementTimeout.new("slow"))).to be(true)
    bad = Class.new(StandardError) { def self.name = "PG::ConnectionBad" }
    expect(described_class.store_error?(raised(ActiveRecord::StatementInvalid.new("lost"), cause: bad.new("x")))).to be(true)
  end

  it "treats an invalid row or a value the column refuses as the job's" do
    expect(described_class.store_error?(ActiveRecord::ValueTooLong.new("too long"))).to be(false)
    expect(described_class.store_error?(ActiveRecord::RecordNotUnique.new("dup"))).to be(false)
    expect(described_class.store_error?(ActiveRecord::StatementInvalid.new("syntax"))).to be(false)
  end
end

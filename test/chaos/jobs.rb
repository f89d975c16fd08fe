# frozen_string_literal: true

# Loaded by every chaos node (`kaal start --require test/chaos/jobs.rb`).
#
# KaalChaosJob.perform(key, fire_time) appends one line
#
#   "<key> <fire_time_unix> <node> <pid> <written_at>\n"
#
# to the job's own record (test/chaos/record.rb).
require_relative "record"

class KaalChaosJob
  def self.perform(key, fire_time)
    KaalChaosRecord.append(key, fire_time)
  end
end

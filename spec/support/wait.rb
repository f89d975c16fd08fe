# frozen_string_literal: true

# Waiting for a condition instead of sleeping a fixed time: a fixed sleep
# followed by a read fails on a loaded machine.
#
#   wait_until("the reload log line") { log.include?("reloaded") }
#
# Polls the block every +interval+ seconds until it returns a truthy value
# (which it returns), or fails the example after +timeout+ seconds naming
# +what+ it waited for (a String, or a lambda returning one, called only
# then: e.g. to show a process's log as it was at the deadline).
module KaalWait
  def wait_until(what, timeout: 10, interval: 0.02)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    loop do
      value = yield
      return value if value
      if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
        what = what.call if what.respond_to?(:call)
        RSpec::Expectations.fail_with("waited #{timeout}s for #{what}, in vain")
      end

      sleep interval
    end
  end
end

RSpec.configure { |config| config.include KaalWait }

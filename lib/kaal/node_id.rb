# frozen_string_literal: true

require "securerandom"
require "socket"

module Kaal
  # This process's node name: hostname:pid:random (a new one after fork),
  # short enough for the backends' 255-character node columns.
  module NodeId
    @lock = Mutex.new
    @pid = nil
    @value = nil

    module_function

    def current
      pid = Process.pid
      @lock.synchronize do
        if @pid != pid
          @pid = pid
          @value = "#{Socket.gethostname[0, 200]}:#{pid}:#{SecureRandom.hex(3)}".freeze
        end
        @value
      end
    end
  end
end

# frozen_string_literal: true

require "spec_helper"
require "socket"

# fork() copies a handle whose call another thread of the parent is running;
# that thread does not exist in the child. Every thread of the child must get
# the handle at once (not only the first one to use it).
RSpec.describe "A handle in a child forked during a call" do
  before { skip "the redis backend is not compiled in" unless Kaal::Native.backends.include?("redis") }

  it "serves every thread of the child while the parent's call still waits" do
    silent = TCPServer.new("127.0.0.1", 0) # accepts, never answers
    backend = Kaal::Backend.build(:redis, namespace: "fork",
                                          config: { url: "redis://127.0.0.1:#{silent.addr[1]}/0", command_timeout: 10 })
    parent_call = Thread.new { backend.ping }
    parent_call.report_on_exception = false
    sleep 0.01 until parent_call.status == "sleep"
    sleep 0.1 # inside the call, waiting on the server

    reader, writer = IO.pipe
    pid = fork do
      reader.close
      results = Array.new(4) { Thread.new { backend.close || :closed } }.map { |t| t.join(3)&.value }
      writer.write(results.inspect)
      exit!(0)
    end
    writer.close
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
    sleep 0.05 until Process.wait(pid, Process::WNOHANG) || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
    unless $?&.pid == pid
      Process.kill(:KILL, pid)
      Process.wait(pid)
      raise "the child hung on the handle its parent's thread was using"
    end
    expect(reader.read).to eq("[:closed, :closed, :closed, :closed]")
  ensure
    parent_call&.kill&.join
    silent&.close
  end
end

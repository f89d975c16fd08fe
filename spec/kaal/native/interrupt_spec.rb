# frozen_string_literal: true

require "spec_helper"
require "socket"
require "timeout"
require "open3"
require "rbconfig"

# Every wait of a server backend ends within a fraction of a second when the
# thread is interrupted (Timeout, Thread#raise, Thread#kill, exit), and
# waits without using the CPU. The server here is a TCP listener that never
# accepts: the kernel completes the handshake, then nothing ever answers.
RSpec.describe "Interrupting a backend call that waits on a server" do
  URLS = {
    redis: "redis://127.0.0.1:%d/0",
    postgres: "postgres://kaal@127.0.0.1:%d/kaal",
    mysql: "mysql://kaal@127.0.0.1:%d/kaal"
  }.freeze

  around do |example|
    @silent = TCPServer.new("127.0.0.1", 0)
    example.run
  ensure
    @silent&.close
  end

  def silent_url(kind) = format(URLS.fetch(kind), @silent.addr[1])

  def silent_backend(kind)
    Kaal::Backend.build(kind, namespace: "interrupt",
                              config: { url: silent_url(kind), connect_timeout: 2, command_timeout: 2 })
  end

  %i[redis postgres mysql].each do |kind|
    describe kind.to_s do
      before { skip "the #{kind} backend is not compiled in" unless Kaal::Native.backends.include?(kind.to_s) }

      it "ends under Timeout.timeout(0.3) within 0.5 s, without spinning" do
        b = silent_backend(kind)
        wall, used = measure(Timeout::Error) { Timeout.timeout(0.3) { b.ping } }
        expect(wall).to be < 0.8
        expect(used).to be < wall * 0.3
      end

      it "ends on Thread#kill and Thread#raise" do
        b = silent_backend(kind)
        [->(t) { t.kill }, ->(t) { t.raise(IOError, "stop") }].each do |stop|
          started = Queue.new
          t = Thread.new do
            started << true
            b.ping
          rescue IOError
            :raised
          end
          started.pop
          sleep 0.1 # let the call reach its wait (any point of it must do)
          t0 = mono
          stop.call(t)
          expect(t.join(1.0)).not_to be_nil, "#{kind}: the thread did not end within 1 s"
          expect(mono - t0).to be < 0.5
        end
      end

      it "ends while waiting for a handle another thread is using" do
        b = silent_backend(kind)
        holder = Thread.new { b.ping rescue nil } # waits on the silent server
        sleep 0.1
        wall, = measure(Timeout::Error) { Timeout.timeout(0.2) { b.delayed_count } }
        expect(wall).to be < 0.7
        holder.kill
        expect(holder.join(1.0)).not_to be_nil
      end

      it "lets the process exit while another thread waits" do
        script = <<~RUBY
          $LOAD_PATH.unshift(#{File.expand_path("../../../lib", __dir__).inspect})
          require "kaal"
          b = Kaal::Backend.build(:#{kind}, namespace: "x",
                                  config: { url: #{silent_url(kind).inspect}, connect_timeout: 5, command_timeout: 5 })
          Thread.new { b.ping }
          sleep 0.3
          exit 0
        RUBY
        t0 = mono
        _out, err, status = Open3.capture3(RbConfig.ruby, "-e", script)
        expect(status.success?).to be(true), err
        expect(mono - t0).to be < 3.0 # ruby's own start-up included; the wait alone is 5 s
      end
    end
  end
end

# frozen_string_literal: true

require "spec_helper"
require "securerandom"
require "stringio"
require "tmpdir"
require "fileutils"

module KaalRuntimeHelper
  # A fresh Kaal per example: memory backend, unique namespace, logs into a
  # StringIO (log_io), recovery off unless the example turns it on.
  def self.included(base)
    base.around do |example|
      Kaal.reset!
      @log_io = StringIO.new
      Kaal.configure do |c|
        c.namespace = "spec-#{SecureRandom.hex(4)}"
        c.logger = Kaal::Log.build(@log_io)
        c.tick_interval = 1
      end
      example.run
    ensure
      Kaal.reset!
    end
  end

  def log_io
    @log_io
  end

  # Unix seconds of a fixed UTC instant.
  def at(text)
    Time.utc(*text.split(/[-T: ]/).map(&:to_i)).to_i
  end

  def write(path, text)
    FileUtils.mkdir_p(File.dirname(path))
    File.write(path, text)
    path
  end

  def in_tmpdir(&block)
    Dir.mktmpdir("kaal-spec") { |dir| Dir.chdir(dir, &block) }
  end
end

# Records every run: [args, kwargs].
class SpecRecorderJob
  @runs = Queue.new
  class << self
    attr_reader :runs

    def perform(*args, **kwargs)
      @runs << [args, kwargs]
    end

    def drain
      out = []
      out << @runs.pop until @runs.empty?
      out
    end
  end
end

# A backend that delegates to a real memory backend until `down!`, then
# raises Kaal::ConnectionError (or the given error class) on every call
# (simulates an outage or a bug; used only for the fail-closed specs).
class SpecFlakyBackend
  attr_reader :calls

  def initialize(real)
    @real = real
    @down = nil
    @calls = Hash.new(0)
  end

  # only: a method name, to fail that call alone.
  def down!(error = Kaal::ConnectionError, only: nil)
    @down = error
    @only = only
  end

  def up!
    @down = nil
  end

  def respond_to_missing?(name, include_private = false)
    @real.respond_to?(name, include_private) || super
  end

  def method_missing(name, *args, **kwargs, &block)
    return super unless @real.respond_to?(name)

    @calls[name] += 1
    raise @down, "simulated outage (#{name})" if @down && (@only.nil? || @only == name)

    @real.public_send(name, *args, **kwargs, &block)
  end
end

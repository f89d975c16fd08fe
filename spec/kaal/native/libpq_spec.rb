# frozen_string_literal: true

require "spec_helper"
require "open3"
require "rbconfig"

# kaal's PostgreSQL backend links the system's libpq; the precompiled pg gem
# carries its own copy. Loaded in one process, one copy's symbols serve both,
# and pg's copy calling into the system's crashed the process as soon as pg
# cancelled a query (what Active Record does after a lost connection).
RSpec.describe "kaal and the pg gem in one process" do
  before do
    reason = KaalBackendSpec.unavailable_reason(:postgres)
    if reason
      raise reason if KaalBackendSpec.require_services?

      skip reason
    end
  end

  # Runs script in a fresh Ruby with this checkout's lib; returns [output, status].
  def run_ruby(script)
    Open3.capture2e({ "URL" => KaalBackendSpec.service_url(:postgres) },
                    RbConfig.ruby, "-I", File.expand_path("../../../lib", __dir__), "-e", script)
  end

  [%w[kaal pg], %w[pg kaal]].each do |first, second|
    it "serves both when #{first} is required before #{second}" do
      out, status = run_ruby(<<~RUBY)
        require "#{first}"
        require "#{second}"
        connection = PG.connect(ENV.fetch("URL"))
        connection.exec("SELECT 1")
        connection.cancel
        connection.close
        backend = Kaal::Backend.build(:postgres, namespace: "libpq-spec", config: { url: ENV.fetch("URL") })
        backend.ping
        backend.close
        connection = PG.connect(ENV.fetch("URL"))
        puts connection.exec("SELECT 41 + 1").getvalue(0, 0)
        connection.close
      RUBY
      expect(status.success?).to be(true), out
      expect(out.lines.last.to_s.strip).to eq("42"), out
    end
  end
end

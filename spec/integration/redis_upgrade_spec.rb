# frozen_string_literal: true

require "fileutils"
require "json"
require "open3"
require "tmpdir"
require_relative "../../test/chaos/harness"

# A rolling upgrade on Redis from the previous release's key layout
# (docs/redis.md, "Key layout and upgrades"), with real processes of both
# releases: bin/chaos --upgrade-from starts every node on the previous
# release (checked out from git at PREVIOUS and compiled, once, under tmp/)
# and restarts each SIGKILLed node on this one, so for a while both releases
# claim on one Redis; `kaal migrate` of this release runs in the middle.
# No (job key, fire time) may run twice.
module KaalRedisUpgrade
  ROOT = File.expand_path("../..", __dir__)
  # The last commit with layout 1 (keys under "<ns>:").
  PREVIOUS = "f7287a2"
  BIN = File.join(ROOT, "bin", "chaos")

  module_function

  def checkout
    File.join(ROOT, "tmp", "previous-release-#{PREVIOUS}")
  end

  # Why the run cannot happen here, or nil.
  def unavailable
    return "the redis backend is not compiled into this build" unless Kaal::Native.backends.include?("redis")
    return "no redis server installed (bin/setup)" unless Kaal::Chaos::Server.available?("redis")

    _, status = Open3.capture2e("git", "-C", ROOT, "cat-file", "-e", "#{PREVIOUS}^{commit}")
    return "commit #{PREVIOUS} (the previous release) is not in this clone's history" unless status.success?

    nil
  end

  # The previous release, extracted from git and compiled (kept for the next run).
  def build_previous
    return checkout if File.exist?(File.join(checkout, "lib", "kaal", "kaal_ext.so"))

    FileUtils.rm_rf(checkout)
    FileUtils.mkdir_p(checkout)
    out, status = Open3.capture2e("sh", "-c", "git -C \"$1\" archive #{PREVIOUS} | tar -x -C \"$2\"", "sh", ROOT, checkout)
    raise "git archive #{PREVIOUS} failed:\n#{out}" unless status.success?

    out, status = Bundler.with_unbundled_env { Open3.capture2e("rake", "compile", chdir: checkout) }
    raise "compiling the previous release failed:\n#{out.lines.last(20).join}" unless status.success?

    checkout
  end
end

RSpec.describe "Redis rolling upgrade from the previous release's keys", :integration do
  it "never runs a pair twice while nodes of both releases claim, nor after kaal migrate" do
    skip_unavailable(KaalRedisUpgrade.unavailable)
    previous = KaalRedisUpgrade.build_previous
    seconds = Float(ENV.fetch("KAAL_CHAOS_SECONDS", "28"))
    Dir.mktmpdir("kaal-upgrade-spec-") do |dir|
      out, err, status = Open3.capture3(KaalRedisUpgrade::BIN, "--backend", "redis", "--nodes", "3", "--jobs", "20",
                                        "--duration", seconds.to_s, "--skew", "2.0", "--spare-node0",
                                        "--upgrade-from", previous, "--migrate-at", (seconds * 0.6).round.to_s,
                                        "--dir", dir, "--json")
      report = JSON.parse(out, symbolize_names: true) rescue nil # rubocop:disable Style/RescueModifier
      explain = -> { "bin/chaos --upgrade-from exited #{status.exitstatus.inspect}; run dir #{dir}\n#{err}" }
      expect(report).not_to be_nil, explain
      puts "\n#{Kaal::Chaos::Report.text(report).gsub(/^/, "    ")}"

      starts = report[:events].select { |e| e[:kind] == "start" }
      old, new = starts.partition { |e| e[:node].end_with?("-old") }
      migrate = report[:events].find { |e| e[:kind] == "migrate" }
      expect(old.size).to eq(3), explain
      expect(new).not_to be_empty, explain
      expect(migrate).not_to be_nil, explain
      # both releases claimed at once: a node of this release started before
      # the last node of the previous one stopped
      old_ends = report[:events].select { |e| %w[kill crash].include?(e[:kind]) && e[:node].end_with?("-old") }
      last_old = old_ends.size < old.size ? Float::INFINITY : old_ends.map { |e| e[:t] }.max
      expect(new.map { |e| e[:t] }.min).to be < last_old, explain
      expect(report[:duplicates]).to be_empty, explain
      expect(status.exitstatus).to eq(0), explain
      # a loss must have a cause (a kill between claim and dispatch, ...);
      # how many there are depends on where the random kills land
      expect(report[:lost].select { |l| l[:reason].start_with?("UNEXPLAINED") }).to be_empty, explain
      expect(report[:coverage]).to be >= 50.0, explain
    end
  end
end

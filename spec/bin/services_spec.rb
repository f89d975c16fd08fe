# frozen_string_literal: true

require "spec_helper"
require "open3"
require "tmpdir"
require "fileutils"

# bin/services (and so bin/test) must work from a checkout in a directory
# only its owner can enter, such as a clone in root's home directory: when
# running as root, PostgreSQL runs as the postgres user, who cannot enter it.
RSpec.describe "bin/services from a checkout inside a 0700 directory" do
  root = File.expand_path("../..", __dir__)
  pg_bin = Dir["/usr/lib/postgresql/*/bin"].max_by { |d| d[%r{/(\d+)/bin\z}, 1].to_i }

  before do
    reason = if !Kaal::Native.backends.include?("postgres") then "the postgres backend is not compiled in"
             elsif pg_bin.nil? then "PostgreSQL server binaries are not installed (bin/setup installs them)"
             end
    next unless reason
    raise reason if ENV["KAAL_REQUIRE_SERVICES"] == "1"

    skip reason
  end

  it "starts PostgreSQL, serves a claim, and removes its private data directory at stop" do
    Dir.mktmpdir("kaal-private") do |private_dir|
      File.chmod(0o700, private_dir)
      checkout = File.join(private_dir, "kaal")
      FileUtils.mkdir_p(File.join(checkout, "bin"))
      FileUtils.cp(File.join(root, "bin/services"), File.join(checkout, "bin/services"))
      env = { "KAAL_SERVICES_DIR" => nil }
      services = File.join(checkout, "bin/services")
      begin
        out, status = Open3.capture2e(env, services, "start", "postgres", chdir: checkout)
        expect(status).to be_success, "bin/services start postgres failed:\n#{out}"
        url = File.read(File.join(checkout, "tmp/services/env"))[/KAAL_TEST_POSTGRES_URL=(\S+)/, 1]
        data_dir = File.read(File.join(checkout, "tmp/services/postgres.dir")).strip
        expect(data_dir).not_to start_with(checkout)

        backend = Kaal::Backend.build(:postgres, namespace: "private-dir-#{Process.pid}", config: { url: url })
        backend.migrate
        expect(backend.claim([["job", 1_767_225_600]], lease_ms: 1000, node: "n", now: 1_767_225_600)).to eq([true])
        backend.close

        pid = File.read(File.join(checkout, "tmp/services/postgres.pid")).to_i
        out, status = Open3.capture2e(env, services, "stop", chdir: checkout)
        expect(status).to be_success, out
        expect(File.exist?(data_dir)).to be(false)
        expect { Process.kill(0, pid) }.to raise_error(Errno::ESRCH)
      ensure
        Open3.capture2e(env, services, "stop", chdir: checkout)
      end
    end
  end
end

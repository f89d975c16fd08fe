# frozen_string_literal: true

require "open3"
require "net/http"
require "tmpdir"
require "timeout"

# `kaal web`: the dashboard standalone, a real process serving real HTTP.
RSpec.describe "kaal web" do
  let(:root) { File.expand_path("../../..", __dir__) }

  around do |example|
    Dir.mktmpdir("kaal-web-cli") do |dir|
      @dir = dir
      example.run
    end
  end

  def kaal(*args)
    Open3.popen2e({ "KAAL_ENV" => nil, "RACK_ENV" => nil }, "bundle", "exec", "ruby", "-I#{root}/lib",
                  "#{root}/bin/kaal", *args, chdir: @dir)
  end

  before do
    File.write(File.join(@dir, "kaal.yml"), <<~YAML)
      defaults:
        backend: sqlite
        backend_config:
          url: sqlite://#{@dir}/kaal.sqlite3
        scheduler_config_path: #{@dir}/jobs.yml
    YAML
    File.write(File.join(@dir, "jobs.yml"), <<~YAML)
      defaults:
        jobs:
          - key: "<b>nightly</b>"
            cron: "30 2 * * *"
            job_class: NightlyJob
    YAML
  end

  it "serves the dashboard on --bind and stops on TERM with status 0" do
    stdin, out, wait = kaal("web", "--config", File.join(@dir, "kaal.yml"), "--bind", "127.0.0.1:0", "--read-only")
    stdin.close
    line = Timeout.timeout(30) { out.gets.to_s }
    url = line[%r{http://127\.0\.0\.1:\d+/}] or raise "no URL in #{line.inspect}: #{out.read}"
    expect(line).to include("sqlite", "(read-only)")
    response = Net::HTTP.get_response(URI(url))
    expect(response.code).to eq("200")
    expect(response.body).to include("&lt;b&gt;nightly&lt;/b&gt;", "read-only")
    expect(response.body).not_to include("<form")
    Process.kill("TERM", wait.pid)
    expect(Timeout.timeout(20) { wait.value }.exitstatus).to eq(0)
  ensure
    if wait&.alive?
      Process.kill("KILL", wait.pid)
      wait.value
    end
    out&.close
  end

  it "refuses a bad --bind with exit 2" do
    stdin, out, wait = kaal("web", "--config", File.join(@dir, "kaal.yml"), "--bind", "nowhere")
    stdin.close
    expect(wait.value.exitstatus).to eq(2)
    expect(out.read).to include("--bind must be HOST:PORT")
  end
end

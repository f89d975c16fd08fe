# frozen_string_literal: true

require_relative "runtime_helper"

RSpec.describe "config/kaal-scheduler.yml and Kaal.register" do
  include KaalRuntimeHelper

  around { |ex| in_tmpdir { ex.run } }

  let(:path) { "config/kaal-scheduler.yml" }

  def load_jobs(text, env: "development")
    write(path, text)
    Kaal.load_scheduler_file!(path, env: env)
  end

  def error_for(text)
    load_jobs(text)
    raise "expected a ConfigurationError"
  rescue Kaal::ConfigurationError => e
    e.message
  end

  it "loads the documented format, merging the environment section by key" do
    jobs = load_jobs(<<~YAML, env: "production")
      defaults:
        jobs:
          - key: "reports:weekly_summary"
            cron: "0 9 * * 1"
            job_class: "WeeklySummaryJob"
            enabled: true
            queue: reports
            args: [1, "{{key}}"]
            kwargs:
              idempotency_key: ""
            time_zone: Europe/Berlin
            catch_up: all
          - key: cleanup
            cron: "@daily"
            job_class: CleanupJob
      production:
        jobs:
          - key: cleanup
            enabled: false
          - key: extra
            cron: "*/5 * * * * *"
            job_class: ExtraJob
    YAML
    expect(jobs.map(&:key)).to eq(%w[reports:weekly_summary cleanup extra])
    weekly = jobs.first
    expect(weekly.cron.time_zone).to eq("Europe/Berlin")
    expect(weekly.catch_up).to eq(:all)
    expect(weekly.queue).to eq("reports")
    expect(jobs[1].enabled).to be(false)
    expect(Kaal.jobs.map { |j| [j[:key], j[:enabled]] }).to contain_exactly(
      ["reports:weekly_summary", true], ["cleanup", false], ["extra", true]
    )
    expect(Kaal.jobs.find { |j| j[:key] == "extra" }[:next_fire_time]).to be_a(Time)
  end

  describe "placeholders" do
    it "fills args and kwargs at dispatch, keeping the type of a whole-string placeholder" do
      job = load_jobs(<<~YAML).first
        defaults:
          jobs:
            - key: "p"
              cron: "0 * * * *"
              job_class: X
              args: ["{{fire_time.unix}}", "run {{key}} at {{fire_time.iso8601}}", ["{{idempotency_key}}"]]
              kwargs:
                idempotency_key: ""
                stamp: "{{ fire_time.unix }}"
                nested: {k: "{{key}}"}
      YAML
      epoch = at("2026-03-01T10:00:00")
      idem = Kaal.idempotency_key("p", epoch)
      args, kwargs = job.arguments_for(epoch, idem)
      expect(args).to eq([epoch, "run p at 2026-03-01T10:00:00+00:00", [idem]])
      expect(kwargs).to eq(idempotency_key: idem, stamp: epoch, nested: { "k" => "p" })
    end

    it "refuses an unknown placeholder at load time, naming file, job and field" do
      msg = error_for("defaults:\n  jobs:\n    - key: a\n      cron: '* * * * *'\n      job_class: X\n      kwargs: {when: '{{fire_time.rfc2822}}'}\n")
      expect(msg).to start_with("config/kaal-scheduler.yml: defaults.jobs[0] (job \"a\"): kwargs.when: unknown placeholder {{fire_time.rfc2822}}")
    end

    it "refuses malformed placeholders, placeholders in keys and unquoted placeholders at load time" do
      job = "defaults:\n  jobs:\n    - key: a\n      cron: '* * * * *'\n      job_class: X\n"
      where = 'config/kaal-scheduler.yml: defaults.jobs[0] (job "a"): '
      expect(error_for("#{job}      args: ['{{fire_time.iso8601}']\n"))
        .to start_with("#{where}args[0]: malformed placeholder in \"{{fire_time.iso8601}\": write {{name}} with two braces")
      expect(error_for("#{job}      args: ['at {{ key }']\n")).to start_with("#{where}args[0]: malformed placeholder")
      expect(error_for("#{job}      args: ['{key}}']\n")).to start_with("#{where}args[0]: malformed placeholder")
      expect(error_for("#{job}      args: ['{{fire_time.nope}}']\n"))
        .to start_with("#{where}args[0]: unknown placeholder {{fire_time.nope}}")
      expect(error_for("#{job}      kwargs: {meta: {'{{key}}': 1}}\n"))
        .to start_with("#{where}kwargs.meta: placeholders are filled in values only, not in keys (key \"{{key}}\")")
      expect(error_for("#{job}      args: [{{fire_time.unix}}]\n"))
        .to start_with("#{where}args[0]: a key that is itself a mapping").and include('quote it ("{{fire_time.unix}}")')
      expect(load_jobs("#{job}      args: ['{{key}} at {{ fire_time.unix }}', '{{{key}}}']\n").size).to eq(1)
    end
  end

  describe "errors name the file, the job and the field" do
    it "unknown field, listing the valid ones" do
      msg = error_for("defaults:\n  jobs:\n    - key: a\n      cron: '* * * * *'\n      job_class: X\n      class: Y\n")
      expect(msg).to eq('config/kaal-scheduler.yml: defaults.jobs[0] (job "a"): unknown field "class" (valid fields: ' \
                        "key, cron, job_class, enabled, queue, priority, set, args, kwargs, time_zone, catch_up, handoff)")
    end

    it "duplicate key" do
      msg = error_for("defaults:\n  jobs:\n    - {key: a, cron: '* * * * *', job_class: X}\n    - {key: a, cron: '0 * * * *', job_class: X}\n")
      expect(msg).to eq('config/kaal-scheduler.yml: defaults.jobs[1] (job "a"): key: duplicate job key (also defaults.jobs[0])')
    end

    it "bad cron, with the cron error" do
      msg = error_for("defaults:\n  jobs:\n    - {key: a, cron: '61 * * * *', job_class: X}\n")
      expect(msg).to start_with('config/kaal-scheduler.yml: defaults.jobs[0] (job "a"): cron: "61 * * * *": ')
      expect(msg).to match(/minute/i)
    end

    it "wrong types" do
      expect(error_for("defaults:\n  jobs:\n    - {key: a, cron: '* * * * *', job_class: X, args: 5}\n"))
        .to eq('config/kaal-scheduler.yml: defaults.jobs[0] (job "a"): args: must be a list (positional arguments), got Integer')
      expect(error_for("defaults:\n  jobs:\n    - {key: a, cron: '* * * * *', job_class: X, enabled: 'no'}\n"))
        .to include('(job "a"): enabled: must be true or false')
      expect(error_for("defaults:\n  jobs:\n    - {key: a, cron: '* * * * *', job_class: 'not a class'}\n"))
        .to include('(job "a"): job_class: "not a class" is not a constant name')
      expect(error_for("defaults:\n  jobs:\n    - {key: a, cron: '* * * * *', job_class: X, catch_up: some}\n"))
        .to include('(job "a"): catch_up: must be one of latest, all, none')
      expect(error_for("defaults:\n  jobs:\n    - {cron: '* * * * *', job_class: X}\n"))
        .to include("defaults.jobs[0]: key: must be a non-empty String")
      expect(error_for("defaults:\n  jobs: {a: 1}\n")).to include("jobs: must be a list of jobs, got Hash")
      expect(error_for("defaults:\n  jobz: []\n")).to include('unknown key "jobz" (valid keys: jobs)')
    end

    it "a key no backend column can hold (over 255 characters, or a NUL byte)" do
      long = "k" * 256
      expect(error_for("defaults:\n  jobs:\n    - {key: #{long}, cron: '* * * * *', job_class: X}\n"))
        .to end_with("key: is 256 characters long; at most 255 fit a backend's column")
      expect(error_for("defaults:\n  jobs:\n    - {key: \"a\\0b\", cron: '* * * * *', job_class: X}\n"))
        .to end_with("key: must not contain NUL bytes")
      expect(load_jobs("defaults:\n  jobs:\n    - {key: #{"é" * 255}, cron: '* * * * *', job_class: X}\n").size).to eq(1)
    end

    it "unknown time zone" do
      expect(error_for("defaults:\n  jobs:\n    - {key: a, cron: '* * * * *', job_class: X, time_zone: Mars/Olympus}\n"))
        .to include('(job "a"): cron: "* * * * *": ')
    end

    it "says the same about a plain block file, whose jobs are built while it is read" do
      head = "defaults:\n  jobs:\n  - key: ok\n    cron: '* * * * *'\n    job_class: X\n"
      expect(error_for("#{head}  - key: a\n    cron: 61 * * * *\n    job_class: X\n"))
        .to start_with('config/kaal-scheduler.yml: defaults.jobs[1] (job "a"): cron: "61 * * * *": ')
      expect(error_for("#{head}  - key: ok\n    cron: 0 * * * *\n    job_class: X\n"))
        .to eq('config/kaal-scheduler.yml: defaults.jobs[1] (job "ok"): key: duplicate job key (also defaults.jobs[0])')
      # the duplicate is found before a later entry's mistake, as in any file
      expect(error_for("#{head}  - key: ok\n    cron: 0 * * * *\n    job_class: X\n  - key: b\n    cron: 99 * * * *\n    job_class: X\n"))
        .to include("duplicate job key")
      expect(error_for("#{head}  - key: b\n    cron: 0 * * * *\n    job_class: X\n    klass: Y\n"))
        .to start_with('config/kaal-scheduler.yml: defaults.jobs[1] (job "b"): unknown field "klass"')
      expect(error_for("#{head}  - key: b\n    job_class: X\n"))
        .to eq('config/kaal-scheduler.yml: defaults.jobs[1] (job "b"): cron: missing')
      expect(error_for("#{head}  jobz: 1\n")).to include('section defaults: unknown key "jobz" (valid keys: jobs)')
      expect(error_for("#{head}development:\n  jobs: 5\n")).to include("development.jobs: must be a list of jobs, got Integer")
      expect(error_for("jobs:\n- key: a\n  cron: 61 * * * *\n  job_class: X\n"))
        .to start_with('config/kaal-scheduler.yml: jobs[0] (job "a"): cron: ')
    end

    it "missing file" do
      expect { Kaal.load_scheduler_file!("config/nope.yml") }
        .to raise_error(Kaal::ConfigurationError, %r{\Aconfig/nope.yml: scheduler file not found})
    end
  end

  it "reads a plain block file like any other: sections, other environments, a file without sections" do
    block = "defaults:\n  jobs:\n  - key: a\n    cron: 0 9 * * 1\n    job_class: X\n    args: [1, two]\n" \
            "  - key: b\n    cron: '@daily'\n    job_class: Y\n    enabled: false\n" \
            "production:\n  jobs:\n  - key: b\n    enabled: true\n"
    expect(load_jobs(block).map { |j| [j.key, j.expression, j.job_class, j.args, j.enabled] })
      .to eq([["a", "0 9 * * 1", "X", [1, "two"], true], ["b", "@daily", "Y", [], false]])
    expect(load_jobs(block, env: "production").map { |j| [j.key, j.enabled] }).to eq([["a", true], ["b", true]])
    expect(load_jobs("defaults:\n  jobs:\n  - key: a\n    cron: 0 9 * * 1\n    job_class: X\ndevelopment:\n  jobs: []\n").map(&:key))
      .to eq(["a"])
    jobs = load_jobs("jobs:\n- key: a\n  cron: 0 9 * * 1\n  job_class: X\n")
    expect(jobs.map(&:key)).to eq(["a"])
    expect(jobs.first.location).to eq('config/kaal-scheduler.yml: jobs[0] (job "a")')
    expect(load_jobs("defaults:\n  jobs:\n").size).to eq(0)
  end

  it "reads a file of several megabytes in parts, with ERB, mistakes and locations past the first part" do
    jobs = Array.new(40_000) { |i| "  - key: job-#{i}\n    cron: 0 0 1 1 *\n    job_class: X\n" }
    text = "defaults:\n  jobs:\n#{jobs.join}"
    expect(text.bytesize).to be > 2 << 20
    loaded = load_jobs(text)
    expect(loaded.size).to eq(40_000)
    expect(loaded.last.location).to eq('config/kaal-scheduler.yml: defaults.jobs[39999] (job "job-39999")')
    expect(load_jobs(text.sub("job_class: X\n  - key: job-39999", "job_class: <%= 'Y' %>\n  - key: job-39999"))[39_998].job_class)
      .to eq("Y")
    expect(error_for(text.sub("key: job-39999\n    cron: 0 0", "key: job-39999\n    cron: 0 99")))
      .to start_with('config/kaal-scheduler.yml: defaults.jobs[39999] (job "job-39999"): cron: "0 99 1 1 *": ')
  end

  describe "entries written alike but for the key (read without building each entry)" do
    def alike(keys, rest = "    cron: 0 0 1 1 *\n    job_class: X\n")
      "defaults:\n  jobs:\n#{keys.map { |k| "  - key: #{k}\n#{rest}" }.join}"
    end

    it "gives the same jobs, each knowing its own entry, and keeps nothing per job for it" do
      rest = "    cron: 0 9 * * 1\n    job_class: X\n    args:\n    - 1\n    - two\n    kwargs: {}\n    # a comment\n\n"
      jobs = load_jobs(alike(Array.new(50) { |i| "job-#{i}" }, rest) + alike(%w[other], "    cron: 0 8 * * *\n    job_class: Y\n").sub("defaults:\n  jobs:\n", ""))
      expect(jobs.size).to eq(51)
      expect(jobs.map { |j| [j.expression, j.job_class, j.args, j.kwargs] }.uniq)
        .to eq([["0 9 * * 1", "X", [1, "two"], {}], ["0 8 * * *", "Y", [], {}]])
      expect(jobs.map(&:location).values_at(0, 2, 49, 50))
        .to eq(['config/kaal-scheduler.yml: defaults.jobs[0] (job "job-0")', 'config/kaal-scheduler.yml: defaults.jobs[2] (job "job-2")',
                'config/kaal-scheduler.yml: defaults.jobs[49] (job "job-49")', 'config/kaal-scheduler.yml: defaults.jobs[50] (job "other")'])
      expect(jobs[30].instance_variables).to eq(%i[@key @spec])
      expect(jobs[30].key).to be_frozen
    end

    it "says what is wrong with a key among them as with any entry" do
      keys = Array.new(40) { |i| "job-#{i}" }
      expect(error_for(alike(keys.dup.insert(30, "job-3"))))
        .to eq('config/kaal-scheduler.yml: defaults.jobs[30] (job "job-3"): key: duplicate job key (also defaults.jobs[3])')
      expect(error_for(alike(keys.dup.insert(30, "kaal:manual:x"))))
        .to start_with('config/kaal-scheduler.yml: defaults.jobs[30] (job "kaal:manual:x"): key: "kaal:manual:" starts')
      expect(error_for(alike(keys.dup.insert(30, "123"))))
        .to eq('config/kaal-scheduler.yml: defaults.jobs[30] (job "123"): key: must be a non-empty String, got 123')
      expect(error_for(alike(keys.dup.insert(30, "[a]")))).to include("key: must be a non-empty String, got [\"a\"]")
      # a second key: in the entry counts (the last one), so every entry has the same key
      expect(error_for(alike(keys, "    cron: 0 0 1 1 *\n    job_class: X\n    key: same\n"))).to include("duplicate job key")
    end

    it "agrees with the general reading on random files of entries alike and not, or alike but for their args" do
      rng = Random.new(20_261_206)
      rests = ["    cron: 0 0 1 1 *\n    job_class: X\n", "    cron: 0 0 1 1 *\n    job_class: X\n\n",
               "    cron: 0 9 * * 1\n    job_class: X\n    args:\n    - 1\n    - two\n",
               "    cron: 0 0 1 1 *\n    job_class: X\n    # note\n    kwargs:\n      key: v\n",
               "    cron: 0 0 1 1 *\n    job_class: X\n    key: again\n", "    cron: 0 0 1 1 *\n    job_class: Y   \n",
               "    cron: 0 0 1 1 *\n    job_class: X\n    args: [\"{{key}}\"]\n",
               # args that differ from entry to entry (%s: a value per entry)
               "    cron: 0 0 1 1 *\n    job_class: X\n    args: [%s]\n", "    cron: 0 0 1 1 *\n    args:   [%s, x]\n    job_class: X\n",
               "    cron: 0 0 1 1 *\n    job_class: X\n    args: [%s]\n    kwargs:\n      id: \"{{key}}\"\n",
               "    cron: 0 0 1 1 *\n    job_class: X\n    args: [%s]\n    args: [1]\n",
               # comments after values, and '#' that starts none
               "    cron: \"0 0 1 1 *\"  # every year\n    job_class: X # the class\n",
               "    cron: 0 0 1 1 * # yearly\n    job_class: X\n    args: [%s]  # per customer\n",
               "    cron: '0 0 1 1 *' #\n    job_class: X\n    args: ['a # b', %s] #c\n    queue: q#1\n",
               "    cron: \"0 0 1 1 *\"#no\n    job_class: X\n"]
      values = [->(i) { i.to_s }, ->(i) { "'s#{i}'" }, ->(i) { "#{i}, #{i}.5" }, ->(_) { "" }, ->(_) { "\"{{key}}\"" },
                ->(_) { "\"{{nope}}\"" }, ->(i) { "#{i}   " }, ->(i) { "#{i} # c" }, ->(_) { "on, ~" }, ->(i) { "[#{i}]" }]
      keys = [->(i) { "job-#{i}" }, ->(i) { "'q #{i}'" }, ->(i) { i.to_s }, ->(i) { "job-#{i % 5}" }, ->(_) { "[a]" },
              ->(i) { "kaal:manual:#{i}" }, ->(i) { "job-#{i} # c" }, ->(i) { " job-#{i}" }]
      read = lambda do |text|
        write(path, text)
        Kaal::SchedulerFile.table(path, "development", default_time_zone: "UTC").values
                           .map { |j| [j.key, j.location, j.to_h, j.args, j.kwargs, j.templated?] }
      rescue Kaal::ConfigurationError => e
        e.message
      end
      200.times do
        rest = rests.sample(random: rng)
        odd = rng.rand(3).zero? # now and then an entry whose key needs a look
        late = nil
        text = +"defaults:\n  jobs:\n"
        rng.rand(1..60).times do |i|
          rest = rests.sample(random: rng) if rng.rand(10).zero?
          key = odd && rng.rand(20).zero? ? keys.sample(random: rng) : keys[0]
          wide = rng.rand(15).zero? # "-   key:": the entry's fields further in
          value = (rng.rand(8).zero? ? values.sample(random: rng) : values[0]).call(i)
          fields = rest.include?("%s") ? format(rest, value) : rest
          late = rng.rand(3) if rng.rand(10).zero? # the key's line after the entry's first line (1) or last (2)
          if late.to_i.positive? && !wide
            lines = fields.lines
            lines.insert(late == 1 ? 1 : lines.size, "    key: #{key.call(i)}\n")
            text << "  - #{lines.join.delete_prefix("    ")}"
          else
            text << (wide ? "  -   key: #{key.call(i)}\n#{fields.gsub(/^(?=.)/, "  ")}" : "  - key: #{key.call(i)}\n#{fields}")
          end
        end
        # an ERB comment (at the end: the same line numbers) sends the same file the general way
        expect(read.call(text)).to eq(read.call("#{text}# <%# general %>\n")), text
      end
    end

    it "reads entries with a comment after a value in C too" do
      rest = "    cron: \"0 9 * * *\"  # every morning\n    job_class: X # the report\n    args: [%d] # customer\n"
      text = "defaults:\n  jobs:\n#{Array.new(40) { |i| "  - key: job-#{i}  # no. #{i}\n#{format(rest, i)}" }.join}"
      jobs = load_jobs(text)
      expect(jobs.map { |j| [j.key, j.expression, j.job_class, j.args] })
        .to eq(Array.new(40) { |i| ["job-#{i}", "0 9 * * *", "X", [i]] })
      expect(jobs[30].instance_variables).to eq(%i[@key @spec]) # made in C
      expect(jobs[30].location).to eq('config/kaal-scheduler.yml: defaults.jobs[30] (job "job-30")')
    end

    it "reads entries whose key is not on their first line in C too" do
      entry = "  - cron: 0 9 * * *\n    job_class: X\n    key: job-%d # the customer\n    args: [%d]\n    queue: q\n"
      jobs = load_jobs("defaults:\n  jobs:\n#{Array.new(40) { |i| format(entry, i, i) }.join}")
      expect(jobs.map { |j| [j.key, j.expression, j.args, j.queue] }).to eq(Array.new(40) { |i| ["job-#{i}", "0 9 * * *", [i], "q"] })
      expect(jobs[30].instance_variables).to eq(%i[@key @spec]) # made in C
      expect(jobs[30].location).to eq('config/kaal-scheduler.yml: defaults.jobs[30] (job "job-30")')
      expect(error_for("defaults:\n  jobs:\n#{Array.new(40) { |i| format(entry, i == 30 ? 3 : i, i) }.join}"))
        .to eq('config/kaal-scheduler.yml: defaults.jobs[30] (job "job-3"): key: duplicate job key (also defaults.jobs[3])')
    end

    it "reads keys quoted or not, and the entry that differs after them" do
      jobs = load_jobs(alike(["a", "b", "'c d'", '"e"', "f"]) + "    queue: q\n")
      expect(jobs.map(&:key)).to eq(["a", "b", "c d", "e", "f"])
      expect(jobs.map(&:queue)).to eq([nil, nil, nil, nil, "q"])
    end
  end

  it "drops a job removed from the file on the next load" do
    load_jobs("defaults:\n  jobs:\n    - {key: a, cron: '* * * * * *', job_class: SpecRecorderJob}\n" \
              "    - {key: b, cron: '* * * * * *', job_class: SpecRecorderJob}\n")
    t = at("2026-01-01T00:00:00")
    Kaal.configure { |c| c.enable_dispatch_recovery = false }
    expect(Kaal.tick!(now: t).map(&:key)).to eq(%w[a b])
    load_jobs("defaults:\n  jobs:\n    - {key: a, cron: '* * * * * *', job_class: SpecRecorderJob}\n")
    expect(Kaal.tick!(now: t + 1).map(&:key)).to eq(%w[a])
    SpecRecorderJob.drain
  end

  describe "conflict policy" do
    let(:file) { "defaults:\n  jobs:\n    - {key: shared, cron: '0 * * * *', job_class: FileJob}\n" }

    it "refuses a key both in code and in the file by default" do
      Kaal.register(key: "shared", cron: "5 * * * *", job_class: "CodeJob")
      expect { load_jobs(file) }.to raise_error(Kaal::ConfigurationError, /"shared" is defined both in code .* code_wins or file_wins/)
      Kaal.unregister("shared")
      load_jobs(file)
      expect { Kaal.register(key: "shared", cron: "5 * * * *", job_class: "CodeJob") }
        .to raise_error(Kaal::ConfigurationError, /\AKaal.register\(key: "shared"\): key: also defined in config\/kaal-scheduler.yml: defaults.jobs\[0\]/)
    end

    it "lets code or file win when configured" do
      Kaal.configure { |c| c.scheduler_conflict_policy = :code_wins }
      Kaal.register(key: "shared", cron: "5 * * * *", job_class: "CodeJob")
      load_jobs(file)
      expect(Kaal.jobs.map { |j| j[:job_class] }).to eq(["CodeJob"])

      Kaal.reset!
      Kaal.configure { |c| c.scheduler_conflict_policy = "file_wins" }
      Kaal.register(key: "shared", cron: "5 * * * *", job_class: "CodeJob")
      load_jobs(file)
      expect(Kaal.jobs.map { |j| j[:job_class] }).to eq(["FileJob"])
    end
  end

  describe "Kaal.register" do
    it "validates like the file does" do
      expect { Kaal.register(key: "x", cron: "* * *", job_class: "X") }
        .to raise_error(Kaal::ConfigurationError, /\AKaal.register\(key: "x"\): cron: "\* \* \*": /)
      expect { Kaal.register(key: "x", cron: "* * * * *") }
        .to raise_error(Kaal::ConfigurationError, /job_class: missing/)
      expect { Kaal.register(key: "x", cron: "* * * * *", job_class: Class.new) }
        .to raise_error(Kaal::ConfigurationError, /anonymous/)
      expect { Kaal.register(key: "x", cron: "* * * * *", job_class: "X", kwargs: { a: "{{nope}}" }) }
        .to raise_error(Kaal::ConfigurationError, /kwargs.a: unknown placeholder \{\{nope\}\}/)
    end

    it "keeps each job's own key and arguments when called in a loop with the same objects" do
      args = [1]
      kwargs = { a: [1] }
      key = +"k-0"
      reg = ->(k) { Kaal.register(key: k, cron: "0 * * * *", job_class: "X", args: args, kwargs: kwargs) }
      jobs = [reg.call(key)]
      key.replace("k-1")
      jobs << reg.call(key)
      args << 2
      kwargs[:a] << 2
      key.replace("k-2")
      jobs << reg.call(key) << reg.call(:"k-3") << reg.call("k 4")
      expect(jobs.map(&:key)).to eq(["k-0", "k-1", "k-2", "k-3", "k 4"])
      expect(jobs.map(&:args)).to eq([[1], [1], [1, 2], [1, 2], [1, 2]])
      # a copy of the list, not of what it holds (as for any job)
      expect(jobs.map { |j| j.kwargs[:a] }).to eq([[1, 2]] * 5)
      expect(jobs.values_at(0, 1).map(&:spec).uniq.size).to eq(1)
      expect(jobs.values_at(3, 4).map(&:spec).uniq.size).to eq(1)
      # jobs per customer: a Spec each, but shared by those that come with the same args
      more = [reg.call("m-1"), reg.call("m-2")]
      args.replace([7])
      more << reg.call("m-3") << reg.call("m-4")
      expect(more.map(&:args)).to eq([[1, 2], [1, 2], [7], [7]])
      expect(more.map(&:spec).uniq.size).to eq(2)
      expect(Kaal.registry["k-1"]).to equal(jobs[1])
      expect { reg.call("k-1") }
        .to raise_error(Kaal::ConfigurationError, 'Kaal.register(key: "k-1"): key: "k-1" is already registered in code (Kaal.unregister it first)')
      expect { reg.call("kaal:manual:x") }
        .to raise_error(Kaal::ConfigurationError, /\AKaal.register\(key: "kaal:manual:x"\): key: "kaal:manual:" starts/)
    end

    it "keeps each job's own cron, class name and kwargs when the caller changes its objects between calls" do
      cron = +"0 * * * *"
      name = +"X"
      kwargs = { a: 1 }
      reg = ->(k, args) { Kaal.register(key: k, cron: cron, job_class: name, args: args, kwargs: kwargs) }
      jobs = [reg.call("a", [1]), reg.call("b", [2])]
      cron.replace("5 * * * *")
      name.replace("Y")
      kwargs[:a] = 2
      jobs << reg.call("c", [2]) << reg.call("d", [3])
      expect(jobs.map { |j| [j.expression, j.job_class, j.kwargs, j.args] })
        .to eq([["0 * * * *", "X", { a: 1 }, [1]], ["0 * * * *", "X", { a: 1 }, [2]],
                ["5 * * * *", "Y", { a: 2 }, [2]], ["5 * * * *", "Y", { a: 2 }, [3]]])
    end

    it "checks each job's own args when only they differ from the previous job's" do
      reg = ->(k, args, **more) { Kaal.register(key: k, cron: "0 * * * *", job_class: "X", args: args, **more) }
      jobs = [reg.call("a", ["{{key}}"]), reg.call("b", [2]), reg.call("c", ["{{fire_time.unix}}", 3])]
      expect(jobs.map(&:templated?)).to eq([true, false, true])
      expect(jobs.map { |j| j.arguments_for(60, "idem")[0] }).to eq([["a"], [2], [60, 3]])
      expect(jobs.map(&:cron).uniq.size).to eq(1)
      with_key = [reg.call("d", [4], kwargs: { idempotency_key: "" }), reg.call("e", [5], kwargs: { idempotency_key: "" })]
      expect(with_key.map(&:templated?)).to eq([true, true])
      expect(with_key.last.arguments_for(60, "idem")).to eq([[5], { idempotency_key: "idem" }])
      expect { reg.call("f", ["{{nope}}"]) }
        .to raise_error(Kaal::ConfigurationError, /\AKaal.register\(key: "f"\): args\[0\]: unknown placeholder \{\{nope\}\}/)
      expect { reg.call("f", "x") }
        .to raise_error(Kaal::ConfigurationError, 'Kaal.register(key: "f"): args: must be a list (positional arguments), got String')
      expect(Kaal.registry["f"]).to be_nil
    end

    it "gives each job per customer its own definition when definitions come interleaved" do
      zones = %w[UTC Europe/Paris Asia/Tokyo]
      crons = ["0 9 * * *", "30 8 * * *"]
      defs = crons.product(zones)
      ids = Array.new(30) { |i| i }
      jobs = ids.map do |i|
        cron, zone = defs[(i * 5) % defs.size]
        Kaal.register(key: "report:#{i}", cron: cron.dup, job_class: "ReportJob", args: [i, "c#{i}", nil, 1.5, :s],
                      time_zone: zone.dup)
      end
      expect(jobs.map { |j| [j.expression, j.cron.time_zone, j.args] })
        .to eq(ids.map { |i| defs[(i * 5) % defs.size] + [[i, "c#{i}", nil, 1.5, :s]] })
      expect(jobs.map { |j| j.spec.cron }.uniq.size).to eq(6) # one Cron per definition, shared
      expect(jobs.map(&:templated?).uniq).to eq([false])
      expect(jobs.map { |j| j.spec.args }).to all(be_frozen)
      # past the first job of each definition: its Spec and the args (three values), not a Spec each
      expect(jobs.last(24).map { |j| j.spec.class }.uniq).to eq([Kaal::Job::ArgsSpec])
      expect(jobs.last(24).map(&:instance_variables).uniq).to eq([%i[@key @spec]])
      # the caller's list changed after the call: the job keeps what it was given
      args = [1]
      job = Kaal.register(key: "mine", cron: "0 9 * * *", job_class: "ReportJob", args: args, time_zone: "UTC")
      args << 2
      expect(job.args).to eq([1])
      # what is not plain gets the full checks and their messages
      templated = Kaal.register(key: "t", cron: "30 8 * * *", job_class: "ReportJob", args: ["{{key}}"], time_zone: "UTC")
      expect(templated.arguments_for(60, "idem")[0]).to eq(["t"])
      nested = Kaal.register(key: "n", cron: "0 9 * * *", job_class: "ReportJob", args: [[1, "{{key}}"]], time_zone: "Asia/Tokyo")
      expect(nested.arguments_for(60, "idem")[0]).to eq([[1, "n"]])
      expect { Kaal.register(key: "f", cron: "0 9 * * *", job_class: "ReportJob", args: ["{{nope}}"], time_zone: "UTC") }
        .to raise_error(Kaal::ConfigurationError, /\AKaal.register\(key: "f"\): args\[0\]: unknown placeholder \{\{nope\}\}/)
      expect { Kaal.register(key: "f", cron: "0 9 * * *", job_class: "ReportJob", args: 7, time_zone: "Europe/Paris") }
        .to raise_error(Kaal::ConfigurationError, 'Kaal.register(key: "f"): args: must be a list (positional arguments), got Integer')
      expect { Kaal.register(key: "report:3", cron: "0 9 * * *", job_class: "ReportJob", args: [3], time_zone: "Asia/Tokyo") }
        .to raise_error(Kaal::ConfigurationError, /\AKaal.register\(key: "report:3"\): key: "report:3" is already registered/)
      expect { Kaal.register(key: "kaal:manual:x", cron: "0 9 * * *", job_class: "ReportJob", args: [3], time_zone: "UTC") }
        .to raise_error(Kaal::ConfigurationError, /\AKaal.register\(key: "kaal:manual:x"\): key: "kaal:manual:" starts/)
      spaced = Kaal.register(key: "report 9", cron: "0 9 * * *", job_class: "ReportJob", args: [9], time_zone: "Europe/Paris")
      expect([spaced.key, spaced.args, spaced.cron.time_zone]).to eq(["report 9", [9], "Europe/Paris"])
      # kwargs with placeholders make every job of the definition templated
      with_key = %w[UTC Asia/Tokyo UTC Asia/Tokyo].each_with_index.map do |zone, i|
        Kaal.register(key: "k#{i}", cron: "0 9 * * *", job_class: "ReportJob", args: [i], time_zone: zone,
                      kwargs: { idempotency_key: "" })
      end
      expect(with_key.map(&:templated?)).to eq([true] * 4)
      expect(with_key.last.arguments_for(60, "idem")).to eq([[3], { idempotency_key: "idem" }])
    end

    it "calls a block with the keywords it accepts" do
      seen = Queue.new
      Kaal.configure { |c| c.enable_dispatch_recovery = false }
      Kaal.register(key: "blk", cron: "0 * * * *") { |fire_time:, idempotency_key:| seen << [fire_time, idempotency_key] }
      Kaal.register(key: "all", cron: "0 * * * *") { |**kw| seen << kw.keys.sort }
      Kaal.register(key: "none", cron: "0 * * * *") { seen << :none }
      t = at("2026-05-01T10:00:00")
      expect(Kaal.tick!(now: t).map(&:status)).to eq(%w[dispatched dispatched dispatched])
      got = Array.new(3) { seen.pop }
      expect(got).to include([Time.at(t), Kaal.idempotency_key("blk", t)], %i[fire_time idempotency_key key], :none)
    end
  end

  describe "enable / disable" do
    it "persists in the backend and is honoured on every tick" do
      Kaal.configure { |c| c.enable_dispatch_recovery = false }
      Kaal.register(key: "j", cron: "* * * * * *", job_class: SpecRecorderJob)
      t = at("2026-01-01T00:00:00")
      Kaal.disable("j")
      expect(Kaal.backend.states).to eq("j" => false)
      expect(Kaal.tick!(now: t)).to be_empty
      expect(Kaal.jobs.first[:enabled]).to be(false)
      # another node (same backend) turns it back on
      Kaal.backend.set_enabled("j", true)
      expect(Kaal.tick!(now: t + 1).map(&:key)).to eq(["j"])
      Kaal.disable("j")
      Kaal.enable("j")
      expect(Kaal.tick!(now: t + 2).map(&:key)).to eq(["j"])
      expect { Kaal.enable("nope") }.to raise_error(Kaal::ConfigurationError, /no job registered with key "nope"/)
      SpecRecorderJob.drain
    end

    it "follows one rule: the file says whether a job may run, disable pauses it, enable lifts only the pause" do
      Kaal.configure { |c| c.enable_dispatch_recovery = false }
      file = ->(flag) { load_jobs("defaults:\n  jobs:\n    - {key: j, cron: '* * * * * *', job_class: SpecRecorderJob, enabled: #{flag}}\n") }
      t = at("2026-01-01T00:00:00")
      file.call(true)
      expect(Kaal.enable("j")).to be(true) # nothing to lift: stores "not paused"
      file.call(false)                     # the file turns it off: a stored enable does not win
      expect(Kaal.tick!(now: t)).to be_empty
      expect(Kaal.jobs.first).to include(enabled: false, source: "file", source_enabled: false, paused: false,
                                         state: "disabled (file)")
      expect { Kaal.enable("j") }.to raise_error(Kaal::ConfigurationError,
                                                 /\(job "j"\): enabled: false there; Kaal.enable only lifts a pause set by Kaal.disable/)
      expect(Kaal.tick!(now: t + 1)).to be_empty

      file.call(true)
      expect(Kaal.disable("j")).to be(false) # a runtime pause, on every node
      expect(Kaal.tick!(now: t + 2)).to be_empty
      expect(Kaal.jobs.first).to include(enabled: false, source_enabled: true, paused: true, state: "paused (Kaal.disable)")
      expect(Kaal.enable("j")).to be(true)
      expect(Kaal.tick!(now: t + 3).map(&:key)).to eq(["j"])
      expect(Kaal.jobs.first).to include(enabled: true, source_enabled: true, paused: false, state: "enabled")

      Kaal.register(key: "c", cron: "@hourly", enabled: false) {}
      expect(Kaal.jobs.find { |j| j[:key] == "c" }).to include(enabled: false, source: "code", state: "disabled (code)")
      SpecRecorderJob.drain
    end

    it "warns when queue: is given to a job that runs on kaal's worker pool" do
      Kaal.register(key: "blk", cron: "@hourly", queue: "low") {}
      expect(log_io.string).to include('Kaal.register(key: "blk"): queue: "low" is ignored: a block/callable job runs ' \
                                       "on kaal's worker pool")
    end

    it "takes the key positionally or as key:, for unregister too" do
      Kaal.register(key: "j", cron: "0 * * * *") {}
      expect(Kaal.disable(key: "j")).to be(false)
      expect(Kaal.jobs.first[:enabled]).to be(false)
      expect(Kaal.enable(key: :j)).to be(true)
      expect(Kaal.jobs.first[:enabled]).to be(true)
      expect { Kaal.disable("j", key: "j") }.to raise_error(ArgumentError, /give the job key once.*not both/)
      expect { Kaal.enable }.to raise_error(ArgumentError, /Kaal.enable\(key: "key"\)/)
      expect { Kaal.disable(key: nil) }.to raise_error(ArgumentError, /must be a non-empty String or Symbol, got nil/)
      expect(Kaal.unregister(key: "j")).to be(true)
      expect(Kaal.registry["j"]).to be_nil
      expect(Kaal.unregister("j")).to be(false)
    end
  end
end

# frozen_string_literal: true

require "kaal"
require "open3"
require "rbconfig"
require "tmpdir"

RSpec.describe Kaal::YamlLoader do
  def both(text)
    expected = begin
      YAML.safe_load(text, aliases: true, filename: "f.yml")
    rescue StandardError => e
      e
    end
    actual = begin
      described_class.load(text, filename: "f.yml")
    rescue StandardError => e
      e
    end
    [actual, expected]
  end

  documents = {
    "empty" => "",
    "comment only" => "# nothing\n",
    "scalars" => "a: 1\nb: 2.5\nc: true\nd: ~\ne: '3'\nf: \"x\\ty\"\ng: 0x1F\nh: 1_000\ni: -.inf\nj: yes\nk: no\nl: ''\n",
    "nested" => "defaults:\n  jobs:\n    - key: a\n      cron: '* * * * *'\n      args: [1, two, {three: 3}]\n      kwargs: {}\n",
    "block scalars" => "a: |\n  x\n  y\nb: >\n  folded\n  text\nc: |-\n  12\n",
    "anchors and aliases" => "base: &b {queue: low, args: [1, 2]}\nother: *b\nlist: [&i 7, *i]\n",
    "merge key" => "base: &b {queue: low, x: 1}\njob:\n  <<: *b\n  x: 2\n",
    "merge list" => "a: &a {p: 1}\nb: &b {q: 2}\nc:\n  <<: [*a, *b]\n",
    "quoted merge key" => "a: &a {p: 1}\nc:\n  \"<<\": *a\n",
    "str tag" => "a: !!str 5\n",
    "ruby object tag" => "a: !ruby/object:Object {}\n",
    "symbol" => "a: :sym\n",
    "date" => "a: 2026-01-01\n",
    "time" => "a: 2026-01-01 10:00:00 Z\n",
    "unknown alias" => "a: *nope\n",
    "two documents" => "--- 1\n--- 2\n",
    "top-level list" => "- 1\n- 2\n",
    "top-level scalar" => "just text\n",
    "duplicate keys" => "a: 1\na: 2\n",
    "non-string keys" => "1: one\ntrue: yes\n~: nil\n",
    "syntax error" => "a: [1, 2\n",
    "bad indentation" => "a:\n  b: 1\n c: 2\n",
    "unicode" => "key: \"r\u00e9sum\u00e9 \u2603\"\nplain: caf\u00e9\n"
  }

  documents.each do |name, text|
    it "gives YAML.safe_load's result for #{name}" do
      actual, expected = both(text)
      if expected.is_a?(Exception)
        expect(actual).to be_a(expected.class)
        expect(actual.message).to eq(expected.message)
      else
        expect(actual).to eq(expected)
        expect(actual.class).to eq(expected.class)
      end
    end
  end

  describe "plain block documents (read in C, Kaal::Native.yaml_blocks)" do
    plain = {
      "a scheduler file" => "---\ndefaults:\n  jobs:\n  - key: job-0\n    cron: 0 0 1 1 *\n    job_class: NoopJob\n" \
                            "  - key: b\n    cron: \"* * * * * *\"\n    args: [\"{{key}}\", 5, two, 'x y', 1.5]\n" \
                            "    kwargs:\n      flag: on\n      none: ~\n      empty: {}\n    enabled: false\n" \
                            "production:\n  jobs:\n    - key: b\n      enabled: yes\n      time_zone: Europe/Berlin\n",
      "words and numbers" => "a: Null\nb: NO\nc: True\nd: -5\ne: 0x1f\nf: .5\ng: 1_000\nh: 12:30\ni: offx\nj: 1#2\n" \
                             "k: x:y\nl: caf\u00e9\nm: y\nn: ''\no: []\np:\nq: \"\"\n" \
                             "r: 007\ns: -0\nt: 0\nu: 123456789012345678\nv: -1234567890123456789\nw: 08\nx: [12, -3, 0]\n",
      "compact and indented lists" => "a:\n- 1\n- [x]\nb:\n  - c: 1\n    d:\n    - e\n    f: g\n  -   h: i\nlast: z\n",
      "comments and blank lines" => "# top\n\na: 1\n  # indented comment\n\nb: 2\n",
      "duplicate keys" => "a: 1\nb: 2\na: 3\n",
      "values with a space (cron expressions)" => "a: 0 9 * * 1-5\nb: 1 2\nc: +1 x\nd: ~ a\ne: 0x1f 2\nf: .inf x\n" \
                                                  "g: 2026-01-01 10\nh: -1 x\ni: 1_000 2\nj: [0 0 1 1 *, 1 2]\n",
      "comments after values" => "a: b # c\nq: 'x # y' # z\nr: \"a#b\"  #\ns: [1, 'a # b', c] # d\nt: a#b\nu: # nothing\n" \
                                 "v:\n  - x # y\n  - 'z' #w\nw: '#' # c\nx: {} # c\ny: b  #  c # d\nz: -1 # c\n" \
                                 "jobs: # the jobs\n- key: a # k\n  cron: \"0 9 * * *\"  # every morning\n  args: [7] # id\n"
    }
    outside = {
      "a comment inside a flow list" => "a: [1, # c\n  2]\n", "a comment after a quote with a quote in it" => "a: 'it''s # x'\n",
      "a comment right after a closing quote" => "a: \"b\"#c\n", "an anchor" => "a: &x 1\nb: *x\n", "a tag" => "a: !!str 1\n",
      "a block scalar" => "a: |\n  x\n", "an escape" => "a: \"x\\ty\"\n", "a multi-line plain scalar" => "a: b\n  c\n",
      "a date" => "a: 2026-01-01\n", "a flow mapping" => "a: {b: 1}\n", "a boolean key" => "on: 1\n", "a tab" => "a:\tb\n",
      "CRLF" => "a: 1\r\n", "a merge key" => "<<: {}\n", "a top-level list" => "- 1\n", "two documents" => "a: 1\n---\nb: 2\n"
    }

    plain.each do |name, text|
      it "reads #{name} in C, with YAML.safe_load's result" do
        fast = described_class.blocks(text)
        expect(fast).not_to be_nil
        expect(Marshal.dump(fast)).to eq(Marshal.dump(YAML.safe_load(text, aliases: true))) # classes and encodings too
        expect(described_class.load(text)).to eq(fast)
      end
    end

    outside.each do |name, text|
      it "leaves #{name} to Psych" do
        expect(described_class.blocks(text)).to be_nil
        actual, expected = both(text)
        expected.is_a?(Exception) ? expect(actual).to(be_a(expected.class)) : expect(actual).to(eq(expected))
      end
    end

    it "agrees with YAML.safe_load on random documents in YAML.dump's layout and an indented one" do
      rng = Random.new(20_261_206)
      words = ["a", "job-1", "on", "No", "null", "~", "1", "-2", "0x1f", "1.5", "x:y", "x: y", "it's", "* * * * *",
               "0 0 1 1 *", "1#2", "a #c", "\u00e9", "true", "y", "", " a", "a ", "{{key}}", "@daily", "12:30", "1_000",
               "-x", "[x]", "a,b", "\"q\"", "back\\slash", "2026-01-01", "007", "-0", "42", "12345678901234567890",
               "1 2", "+1 x", "0x1f 2", ".inf x", "2026-01-01 10", "2026-01-01 10:00:00", "~ a", "1_000 2", "0 9 * * 1-5", "-1 x", "1.5 e"]
      gen = lambda do |depth|
        case depth > 2 ? rng.rand(3) : rng.rand(5)
        when 0, 2 then words.sample(random: rng)
        when 1 then [1, -3, 2.5, true, false, nil, 0].sample(random: rng)
        when 3 then Array.new(rng.rand(4)) { gen.call(depth + 1) }
        else Array.new(rng.rand(4)) { [%w[key cron a-b x on test 1].sample(random: rng), gen.call(depth + 1)] }.to_h
        end
      end
      comments = [" # c", "  #c", " #", "#x", " # 'q' \"x\" # y", "   # a: b", " #[x, y]"]
      fast = 0
      400.times do
        text = YAML.dump("defaults" => { "jobs" => Array.new(rng.rand(4)) { gen.call(1) } }, "x" => gen.call(1))
        text = text.gsub(/^(\s*)- /) { "#{Regexp.last_match(1)}  - " } if rng.rand(2).zero?
        # comments after values (and a '#' that is none), on some lines
        if rng.rand(2).zero?
          text = text.gsub(/(?<=\S)$/) { rng.rand(3).zero? ? comments.sample(random: rng) : "" }
        end
        expected = begin
          Marshal.dump(YAML.safe_load(text, aliases: true))
        rescue Psych::Exception => e
          e.class
        end
        got = begin
          described_class.blocks(text)
        rescue Psych::Exception => e
          e.class
        end
        next if got.nil? # left to Psych

        fast += 1
        expect(got.is_a?(Class) ? got : Marshal.dump(got)).to eq(expected), text
      end
      expect(fast).to be > 100
    end

    it "gives every entry its own Strings, also for a repeated value" do
      data = described_class.load("a: 0 0 * * *\nb: 0 0 * * *\n")
      expect(data["a"]).to eq(data["b"])
      expect(data["a"]).not_to equal(data["b"])
    end
  end

  it "reads a plain file without loading Psych, and loads it for what needs it, with the same errors" do
    Dir.mktmpdir do |dir|
      # (the first three read while Psych is not loaded: an ERB error needs no YAML)
      files = { "plain" => "defaults:\n  jobs:\n  - key: a\n    cron: 0 9 * * 1-5  # morning\n    args: [1, x]\n",
                "erb" => "a: <%= nope %>\n", "syntax" => "a: [1, 2\n", "alias" => "a: *nope\n", "date" => "a: 2026-01-01\n",
                "typed" => "a: 0x1f\n" }
      paths = files.map { |name, text| File.join(dir, "#{name}.yml").tap { |path| File.write(path, text) } }
      read = <<~RUBY
        require "kaal"
        ARGV.each do |path|
          psych = defined?(Psych) ? "loaded" : "not loaded"
          puts [psych, Kaal::ConfigFile.load(path, "development", what: "file")].inspect
        rescue Kaal::ConfigurationError => e
          puts [psych, e.message].inspect
        end
      RUBY
      out, status = Open3.capture2e(RbConfig.ruby, "-I", File.expand_path("../../lib", __dir__), "-e", read, *paths)
      expect(status).to be_success, out
      here = paths.map do |path|
        Kaal::ConfigFile.load(path, "development", what: "file")
      rescue Kaal::ConfigurationError => e
        e.message
      end
      expect(out.lines.map { |line| eval(line) }) # rubocop:disable Security/Eval -- our own inspect output
        .to eq([["not loaded", here[0]], ["not loaded", here[1]], ["not loaded", here[2]], ["loaded", here[3]],
                ["loaded", here[4]], ["loaded", here[5]]])
      expect(here[1]).to start_with("#{paths[1]}: ERB error: ")
      expect(here[2]).to start_with("#{paths[2]}: line ")
      expect(here[5]).to eq({ "a" => 31 })
    end
  end

  it "keeps aliases pointing at the same object, as safe_load does" do
    data = described_class.load("a: &x [1]\nb: *x\n")
    expect(data["a"]).to equal(data["b"])
  end
end

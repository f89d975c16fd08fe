# frozen_string_literal: true

require "kaal"

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

  it "keeps aliases pointing at the same object, as safe_load does" do
    data = described_class.load("a: &x [1]\nb: *x\n")
    expect(data["a"]).to equal(data["b"])
  end
end

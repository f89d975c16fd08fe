# frozen_string_literal: true

require "spec_helper"
require "open3"
require "json"
require "time"

RSpec.describe Kaal::Cron do
  def parse(expr, **opts)
    described_class.parse(expr, **opts)
  end

  def utc(*args)
    Time.utc(*args)
  end

  describe ".parse" do
    it "returns a frozen, Ractor-shareable value" do
      cron = parse("30 2 * * *", time_zone: "America/New_York")
      expect(cron).to be_frozen
      expect(Ractor.shareable?(cron)).to be(true)
      expect(cron.expression).to be_frozen
      expect(cron.time_zone).to be_frozen
    end

    it "can be used inside another Ractor" do
      lib = File.expand_path("../../lib", __dir__)
      script = <<~RUBY
        Warning[:experimental] = false
        cron = Kaal::Cron.parse("30 2 * * *", time_zone: "America/New_York")
        ractor = Ractor.new(cron) do |c|
          [c.next_epoch(0), c.next_time(0).utc_offset, c.explain, Kaal::Cron.parse("0 9 * * 1").time_zone]
        end
        p ractor.take
      RUBY
      out, err, status = Open3.capture3(RbConfig.ruby, "-w", "-I", lib, "-rkaal", "-e", script)
      expect([err, status.success?]).to eq(["", true])
      expect(out).to eq(%([27000, -18000, "At 02:30 every day (America/New_York)", "UTC"]\n))
    end

    it "keeps the expression and the zone name" do
      cron = parse("30 2 * * *", time_zone: "America/New_York")
      expect(cron.expression).to eq("30 2 * * *")
      expect(cron.time_zone).to eq("America/New_York")
      expect(cron.to_s).to eq("30 2 * * *")
      expect(cron.inspect).to eq('#<Kaal::Cron "30 2 * * *" America/New_York>')
    end

    it "defaults to UTC" do
      expect(parse("0 9 * * *").time_zone).to eq("UTC")
    end

    it "does not keep a reference to a mutable expression string" do
      expr = +"0 9 * * *"
      cron = parse(expr)
      expr.replace("1 1 1 1 1")
      expect(cron.expression).to eq("0 9 * * *")
      expect(cron.next_time(utc(2026, 1, 1))).to eq(utc(2026, 1, 1, 9))
    end

    it "lets a trailing zone in the expression override time_zone:" do
      cron = parse("0 9 * * 1 Europe/Berlin", time_zone: "America/New_York")
      expect(cron.time_zone).to eq("Europe/Berlin")
      expect(cron.next_time(utc(2026, 1, 1))).to eq(Time.new(2026, 1, 5, 9, 0, 0, "+01:00"))
    end

    it "accepts TZInfo and ActiveSupport::TimeZone objects as time_zone:" do
      require "active_support"
      require "active_support/values/time_zone"
      expect(parse("0 9 * * *", time_zone: TZInfo::Timezone.get("Asia/Tokyo")).time_zone).to eq("Asia/Tokyo")
      zone = ActiveSupport::TimeZone["Eastern Time (US & Canada)"]
      expect(parse("0 9 * * *", time_zone: zone).time_zone).to eq("America/New_York")
    end

    it "accepts Rails zone names as time_zone: when ActiveSupport is loaded" do
      require "active_support"
      require "active_support/values/time_zone"
      expect(parse("0 9 * * *", time_zone: "Eastern Time (US & Canada)").time_zone).to eq("America/New_York")
      expect(parse("0 9 * * *", time_zone: :Tokyo).time_zone).to eq("Asia/Tokyo")
      expect(parse("0 9 * * *").time_zone).to eq("UTC")
      expect(parse("0 9 * * *", time_zone: "UTC").time_zone).to eq("UTC")
      job = Kaal::Job.new(key: "k", cron: "0 9 * * *", job_class: "X", location: "spec", source: :code,
                          default_time_zone: "Berlin")
      expect(job.cron.time_zone).to eq("Europe/Berlin")
    end

    it "accepts macros" do
      from = utc(2026, 5, 13, 10, 17)
      expect(parse("@hourly").next_time(from)).to eq(utc(2026, 5, 13, 11))
      expect(parse("@daily").next_time(from)).to eq(utc(2026, 5, 14))
      expect(parse("@midnight").next_time(from)).to eq(utc(2026, 5, 14))
      expect(parse("@weekly").next_time(from)).to eq(utc(2026, 5, 17)) # a Sunday
      expect(parse("@monthly").next_time(from)).to eq(utc(2026, 6, 1))
      expect(parse("@yearly").next_time(from)).to eq(utc(2027, 1, 1))
      expect(parse("@annually").next_time(from)).to eq(utc(2027, 1, 1))
    end
  end

  describe ".valid?" do
    it "is true for valid expressions and false for invalid ones" do
      expect(described_class.valid?("*/15 * * * *")).to be(true)
      expect(described_class.valid?("0 9 * * 1 Europe/Berlin")).to be(true)
      expect(described_class.valid?("61 * * * *")).to be(false)
      expect(described_class.valid?("0 0 30 2 *")).to be(false)
      expect(described_class.valid?("0 9 * * *", time_zone: "Nowhere/Land")).to be(false)
    end
  end

  describe "#next_time" do
    it "returns Times with the zone's utc_offset at that instant" do
      cron = parse("0 12 * * *", time_zone: "America/New_York")
      winter = cron.next_time(utc(2026, 1, 10))
      summer = cron.next_time(utc(2026, 7, 10))
      expect([winter.hour, winter.utc_offset]).to eq([12, -5 * 3600])
      expect([summer.hour, summer.utc_offset]).to eq([12, -4 * 3600])
      expect(winter.iso8601).to eq("2026-01-10T12:00:00-05:00")
    end

    it "returns UTC times with a +00:00 offset" do
      time = parse("0 0 * * *").next_time(0)
      expect(time.utc_offset).to eq(0)
      expect(time.iso8601).to eq("1970-01-02T00:00:00+00:00")
    end

    it "is strictly after from, in whole seconds, also for a fractional from" do
      cron = parse("* * * * *")
      expect(cron.next_time(Time.at(120))).to eq(Time.at(180))
      expect(cron.next_time(Time.at(120, 500, :millisecond))).to eq(Time.at(180))
      expect(cron.next_time(Time.at(119, 999_999, :microsecond))).to eq(Time.at(120))
      expect(cron.next_time(Time.at(-60, 500, :millisecond))).to eq(Time.at(0))
      expect(cron.next_time(Time.at(120, 500, :millisecond)).subsec).to eq(0)
    end

    it "accepts Integer Unix seconds and objects responding to to_time" do
      cron = parse("0 9 * * *")
      from = utc(2026, 1, 1)
      expect(cron.next_time(from.to_i)).to eq(utc(2026, 1, 1, 9))
      time_like = Struct.new(:to_time).new(from)
      expect(cron.next_time(time_like)).to eq(utc(2026, 1, 1, 9))
      expect(cron.next_time(from.to_datetime)).to eq(utc(2026, 1, 1, 9))
    end

    it "defaults to now" do
      next_minute = parse("* * * * *").next_time
      expect(next_minute).to be > Time.now
      expect(next_minute).to be <= Time.now + 60
    end

    it "handles 6-field expressions with seconds" do
      expect(parse("*/10 * * * * *").next_time(Time.at(5))).to eq(Time.at(10))
      expect(parse("30 0 9 * * *").next_time(utc(2026, 1, 1))).to eq(utc(2026, 1, 1, 9, 0, 30))
      expect(parse("15,45 * * * * *").next_times(Time.at(0), count: 3).map(&:to_i)).to eq([15, 45, 75])
    end

    it "finds rare dates without iterating" do
      expect(parse("0 0 29 2 *").next_time(utc(2026, 1, 1))).to eq(utc(2028, 2, 29))
      expect(parse("0 0 29 2 1").next_time(utc(2026, 1, 1))).to eq(utc(2026, 2, 2)) # OR rule: any Monday in February
      expect(parse("0 0 29 2 *").next_time(utc(2097, 1, 1))).to eq(utc(2104, 2, 29))
      expect(parse("5 4 * * SUN#2").next_time(utc(2026, 3, 1))).to eq(utc(2026, 3, 8, 4, 5))
      expect(parse("0 0 L * *").next_time(utc(2026, 2, 1))).to eq(utc(2026, 2, 28))
      expect(parse("0 0 LW * *").next_time(utc(2026, 5, 1))).to eq(utc(2026, 5, 29)) # 31st is a Sunday
      expect(parse("0 0 15W * *").next_time(utc(2026, 8, 1))).to eq(utc(2026, 8, 14)) # 15th is a Saturday
      expect(parse("0 0 * * 5L").next_time(utc(2026, 1, 1))).to eq(utc(2026, 1, 30))
    end
  end

  describe "#next_times" do
    it "returns count successive fire times" do
      cron = parse("30 2 * * *", time_zone: "America/New_York")
      times = cron.next_times(Time.iso8601("2026-03-07T12:00:00-05:00"), count: 3)
      expect(times.map(&:iso8601)).to eq(%w[2026-03-08T03:30:00-04:00 2026-03-09T02:30:00-04:00
                                             2026-03-10T02:30:00-04:00])
      expect(cron.next_times(0, count: 0)).to eq([])
    end
  end

  describe "#previous_time" do
    it "is strictly before from, with the zone's offset" do
      cron = parse("0 9 * * 1", time_zone: "Europe/Berlin")
      from = Time.new(2026, 6, 15, 9, 0, 0, "+02:00") # a Monday, 09:00 exactly
      expect(cron.previous_time(from)).to eq(Time.new(2026, 6, 8, 9, 0, 0, "+02:00"))
      expect(cron.previous_time(from).utc_offset).to eq(7200)
      expect(cron.previous_time(from + 0.5)).to eq(from)
    end

    it "mirrors next_time" do
      cron = parse("*/7 3-5 * * *", time_zone: "Australia/Lord_Howe")
      times = cron.next_times(utc(2026, 4, 1), count: 40)
      times.each_cons(2) { |a, b| expect(cron.previous_time(b)).to eq(a) }
    end
  end

  describe "#match?" do
    it "is true exactly at fire times" do
      cron = parse("30 2 * * *", time_zone: "America/New_York")
      fire = cron.next_time(utc(2026, 6, 1))
      expect(cron.match?(fire)).to be(true)
      expect(cron.match?(fire.to_i)).to be(true)
      expect(cron.match?(fire + 1)).to be(false)
      expect(cron.match?(fire + 0.5)).to be(false)
      expect(cron.match?(fire - 86_400 + 3600)).to be(false)
    end

    it "agrees with the DST gap rule" do
      cron = parse("30 2 * * *", time_zone: "America/New_York")
      expect(cron.match?(Time.iso8601("2026-03-08T03:30:00-04:00"))).to be(true)
    end
  end

  describe "#next_epoch and #previous_epoch" do
    it "work on Integer Unix seconds" do
      cron = parse("0 9 * * *", time_zone: "Asia/Kolkata")
      from = utc(2026, 1, 1).to_i
      expect(cron.next_epoch(from)).to eq(cron.next_time(from).to_i)
      expect(cron.previous_epoch(from)).to eq(cron.previous_time(from).to_i)
      expect(cron.next_epoch(from)).to eq(Time.new(2026, 1, 1, 9, 0, 0, "+05:30").to_i)
    end
  end

  describe "DST" do
    it "fires a daily job in the America/New_York spring gap at the shifted instant" do
      cron = parse("30 2 * * *", time_zone: "America/New_York")
      times = cron.next_times(utc(2026, 3, 7), count: 3).map(&:iso8601)
      expect(times).to eq(%w[2026-03-07T02:30:00-05:00 2026-03-08T03:30:00-04:00 2026-03-09T02:30:00-04:00])
    end

    it "fires a fixed-time job once in the America/New_York fall overlap (the earlier instant)" do
      cron = parse("30 1 * * *", time_zone: "America/New_York")
      times = cron.next_times(utc(2026, 10, 31), count: 3).map(&:iso8601)
      expect(times).to eq(%w[2026-10-31T01:30:00-04:00 2026-11-01T01:30:00-04:00 2026-11-02T01:30:00-05:00])
    end

    it "keeps an interval job firing through the repeated hour" do
      cron = parse("*/30 * * * *", time_zone: "America/New_York")
      times = cron.next_times(utc(2026, 11, 1, 4), count: 6).map(&:iso8601)
      expect(times).to eq(%w[2026-11-01T00:30:00-04:00 2026-11-01T01:00:00-04:00 2026-11-01T01:30:00-04:00
                             2026-11-01T01:00:00-05:00 2026-11-01T01:30:00-05:00 2026-11-01T02:00:00-05:00])
    end

    it "handles the Europe/London gap and overlap" do
      cron = parse("30 1 * * *", time_zone: "Europe/London")
      expect(cron.next_times(utc(2026, 3, 28, 12), count: 2).map(&:iso8601))
        .to eq(%w[2026-03-29T02:30:00+01:00 2026-03-30T01:30:00+01:00])
      expect(cron.next_times(utc(2026, 10, 24, 12), count: 2).map(&:iso8601))
        .to eq(%w[2026-10-25T01:30:00+01:00 2026-10-26T01:30:00+00:00])
    end
  end

  # An independent check: the system's localtime (Ruby's Time under ENV["TZ"]
  # in a subprocess) walked minute by minute, with the DST rules of
  # docs/cron.md applied in plain Ruby, against kaal's own zone reader and
  # field-jumping search.
  describe "against a brute-force minute walk under ENV['TZ']" do
    walker = <<~RUBY
      start, stop = ARGV.map(&:to_i)
      (start..stop).step(60) do |t|
        l = Time.at(t)
        puts [t, l.year, l.month, l.day, l.hour, l.min, l.wday, l.utc_offset].join(" ")
      end
    RUBY

    define_method(:walker) { walker }

    def walk(zone, from, to)
      out, status = Open3.capture2({ "TZ" => zone }, RbConfig.ruby, "-e", walker, from.to_i.to_s, to.to_i.to_s)
      expect(status).to be_success
      out.lines.map { |line| line.split.map { |v| Integer(v, 10) } }
    end

    # Expected fire instants of "M H * * *" (fixed time) or a minute-set job
    # with every hour, under the gap/overlap rules of docs/cron.md.
    def expected_fixed(rows, hour, minute)
      rows.group_by { |r| r[1..3] }.filter_map do |(y, m, d), day|
        hits = day.select { |r| r[4] == hour && r[5] == minute }
        next hits.first[0] if hits.any?

        jump = day.each_cons(2).find { |a, b| b[7] != a[7] }
        next unless jump # the day is cut by the window

        Time.utc(y, m, d, hour, minute).to_i - jump[0][7]
      end
    end

    [["America/New_York", Time.utc(2026, 3, 5), Time.utc(2026, 3, 12)],
     ["America/New_York", Time.utc(2026, 10, 29), Time.utc(2026, 11, 5)],
     ["Europe/London", Time.utc(2026, 3, 26), Time.utc(2026, 4, 2)],
     ["Europe/London", Time.utc(2026, 10, 22), Time.utc(2026, 10, 29)],
     ["Australia/Sydney", Time.utc(2026, 4, 1), Time.utc(2026, 4, 8)],
     ["Europe/Dublin", Time.utc(2026, 10, 22), Time.utc(2026, 10, 29)]].each do |zone, from, to|
      it "agrees in #{zone} around #{from.strftime("%Y-%m-%d")}" do
        rows = walk(zone, from, to)
        inner = rows.select { |r| r[0] > from.to_i + 86_400 && r[0] < to.to_i - 86_400 }
        lo = inner.first[0] - 1
        hi = inner.last[0]

        every20 = parse("*/20 * * * *", time_zone: zone)
        expected = inner.select { |r| (r[5] % 20).zero? }.map(&:first)
        actual = every20.next_times(lo, count: expected.size + 1).map(&:to_i).select { |t| t <= hi }
        expect(actual).to eq(expected)

        [[2, 30], [1, 30], [0, 0]].each do |h, m|
          fixed = parse("#{m} #{h} * * *", time_zone: zone)
          want = expected_fixed(rows, h, m).select { |t| t > lo && t <= hi }
          expect(want.size).to be >= 4
          got = fixed.next_times(lo, count: want.size + 1).map(&:to_i).select { |t| t <= hi }
          expect(got).to eq(want), "#{m} #{h} * * * in #{zone}"
        end
      end
    end
  end

  describe "equality" do
    it "compares the schedule and the zone, not the spelling" do
      expect(parse("0 9 * * MON")).to eq(parse("0 9 * * 1"))
      expect(parse("@daily")).to eql(parse("0 0 * * *"))
      expect(parse("0 9 * * 1 Europe/Berlin")).to eq(parse("0 9 * * 1", time_zone: "Europe/Berlin"))
      expect(parse("0 9 * * 1").hash).to eq(parse("0 9 * * MON").hash)
      expect(parse("0 9 * * 1")).not_to eq(parse("0 9 * * 2"))
      expect(parse("0 9 * * 1")).not_to eq(parse("0 9 * * 1", time_zone: "Europe/Berlin"))
      expect(parse("0 9 * * 1")).not_to eq("0 9 * * 1")
    end

    it "works as a Hash key" do
      table = { parse("0 9 * * 1") => :weekly }
      expect(table[parse("0 9 * * MON")]).to eq(:weekly)
    end

    it "survives Marshal with its zone" do
      cron = parse("0 9 * * 1 Europe/Berlin")
      copy = Marshal.load(Marshal.dump(cron))
      expect(copy).to eq(cron)
      expect([copy.expression, copy.time_zone]).to eq(["0 9 * * 1 Europe/Berlin", "Europe/Berlin"])
      expect(Marshal.load(Marshal.dump(parse("0 9 * * 1", time_zone: "Asia/Tokyo"))).time_zone).to eq("Asia/Tokyo")
    end

    it "is built only by parse" do
      expect { described_class.new }.to raise_error(NoMethodError)
    end

    it "returns itself from dup and clone" do
      cron = parse("0 9 * * 1")
      expect(cron.dup).to equal(cron)
      expect(cron.clone).to equal(cron)
    end
  end

  it "survives GC compaction" do
    crons = Array.new(50) { |i| parse("#{i} 9 * * *", time_zone: "Europe/Paris") }
    GC.start
    GC.compact if GC.respond_to?(:compact)
    crons.each_with_index do |cron, i|
      expect(cron.expression).to eq("#{i} 9 * * *")
      expect(cron.time_zone).to eq("Europe/Paris")
    end
  end
end

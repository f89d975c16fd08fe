# frozen_string_literal: true

require "time"

# Differential test of the cron engine (C, through Kaal::Cron) against the
# independent oracle in spec/support/cron_oracle.rb: its own parser, a brute
# force walk over calendar days, and the operating system's zone rules (Ruby's
# Time under TZ=<zone>, one subprocess per zone, two at a time).
#
# The expressions and start times are random; the seed is printed with every
# failure. It is rspec's --seed unless KAAL_CRON_SEED is set; reproduce with
# KAAL_CRON_SEED=<seed> bundle exec rspec spec/kaal/cron_differential_spec.rb.
RSpec.describe "Kaal::Cron against an independent oracle" do
  zones = %w[
    UTC America/New_York Europe/London Europe/Berlin Europe/Dublin Asia/Kolkata Asia/Kathmandu
    Australia/Sydney Australia/Lord_Howe Pacific/Chatham Pacific/Apia Africa/Casablanca
    America/St_Johns America/Santiago America/Sao_Paulo America/Nuuk Pacific/Kiritimati Antarctica/Troll
  ].map { |z| z == "America/Nuuk" && !CronOracle.zone_file?(z) ? "America/Godthab" : z }.freeze
  fixed = ["*/15 * * * *", "0 9 * * 1", "30 2 * * *", "0 0 L * *", "5 4 * * SUN#2",
           "0 0 29 2 *", "0 30 1 * * *", "15,45 1-3 * * *"].freeze
  never = ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 */9 * MON#5", "0 0 31W 2 *", "0 0 30W feb ?",
           "0 0 L-29 FEB *", "0 0 */10 2 MON#5", "0 0 30,31 2 ?"].freeze
  # Fixed starts in every zone: leap days across 2100 (not a leap year), the
  # 32-bit time_t limit, the end of the tested range, walks back before 1970.
  explicit = [["0 0 29 2 *", "2096-03-01T00:00:00Z"], ["0 0 29 2 *", "2104-03-01T00:00:00Z"],
              ["*/7 * * * *", "2038-01-19T03:00:00Z"], ["0 0 L * *", "2099-12-31T12:00:00Z"],
              ["0 0 1 1 *", "1970-01-01T00:00:00Z"], ["@hourly", "1970-01-01T00:30:00Z"]].freeze
  # Invalid tokens per field (docs/cron.md, "Errors"), swapped into
  # random valid expressions: both sides must reject the result.
  corruptions = {
    "second" => %w[60 5-1 */0 1,,2 ,1 x 1- */ L 1W ?],
    "minute" => %w[60 59-0 */0 1,,2 7, - 0-60 L ? MON],
    "hour" => %w[24 23-1 */0 1,,2 JAN 0-24 ?],
    "day of month" => %w[0 32 L-31 32W 0W W L- 15-10 */0 1,,2 JAN],
    "month" => %w[0 13 JANUARY DEC-JAN ? */0 1,,2 L],
    "day of week" => %w[8 MON#6 MON#0 8L SAT-MON FOO #1 1# */0 1,,2 MON-8]
  }.freeze
  random_count = 1500
  zones_per_expression = 4
  fixed_transition_starts = 10
  fixed_random_starts = 3
  chained = 3
  trailing_zone_share = 0.1
  fractional_share = 0.1

  iso = ->(pair) { pair ? Time.at(pair[0], in: pair[1]).iso8601 : "nil" }

  describe "on random expressions, zones and start times" do
    before(:context) do
      @seed = Integer(ENV.fetch("KAAL_CRON_SEED", RSpec.configuration.seed))
      rng = Random.new(@seed)

      @random_exprs = []
      @never_exprs = never.dup
      while @random_exprs.size < random_count
        text = CronOracle::Generator.expression(rng)
        (CronOracle::Expr.new(text).fires? ? @random_exprs : @never_exprs) << text
      end
      @never_exprs.uniq!

      cases = zones.to_h { |zone| [zone, []] }
      zones.each do |zone|
        fixed.each do |text|
          fixed_transition_starts.times { cases[zone] << [text, "transition"] }
          fixed_random_starts.times { cases[zone] << [text, "random"] }
        end
        explicit.each { |text, from| cases[zone] << [text, Time.iso8601(from).to_i] }
      end
      @random_exprs.each do |text|
        zones.sample(zones_per_expression, random: rng).each do |zone|
          cases[zone] << [text, "transition"] << [text, "transition"] << [text, "random"]
        end
      end
      requests = zones.each_with_index.map do |zone, i|
        { "zone" => zone, "seed" => @seed + 7919 * i, "count" => chained, "cases" => cases[zone] }
      end
      @replies = CronOracle.run_workers(requests, parallel: 2)

      @problems = Hash.new { |h, k| h[k] = [] }
      @checks = Hash.new(0)
      crons = {}
      @replies.each do |reply|
        zone = reply.fetch("zone")
        reply.fetch("results").each do |res|
          res.fetch("dst", []).each { |rule| @checks[rule.to_sym] += 1 }
          where = "#{res.fetch('expr').inspect} zone=#{zone} from=#{Time.at(res.fetch('from')).utc.iso8601} " \
                  "(#{res.fetch('from')})"
          if res["error"]
            @problems[:oracle] << "#{where}: #{res['error']}"
            next
          end

          text = res.fetch("expr")
          cron = crons[[text, zone]] ||= engine do
            if zone != "UTC" && !text.start_with?("@") && rng.rand < trailing_zone_share
              Kaal::Cron.parse("#{text} #{zone}", time_zone: "UTC") # the trailing zone overrides
            else
              Kaal::Cron.parse(text, time_zone: zone)
            end
          end
          @checks[:parse] += 1
          if cron.is_a?(String)
            @problems[:parse] << "#{where}: #{cron}"
            next
          end

          compare(cron, res, where, rng.rand < fractional_share)
        end
      end
    end

    # The block's value, or "raised <class>: <message>" when it raises.
    def engine
      yield
    rescue StandardError => e
      "raised #{e.class}: #{e.message}"
    end

    def pair(time)
      time.is_a?(Time) ? [time.to_i, time.utc_offset] : time
    end

    def show(pair)
      pair.is_a?(Array) ? Time.at(pair[0], in: pair[1]).iso8601 : pair.inspect
    end

    def show_all(pairs)
      pairs.is_a?(Array) ? pairs.map { |x| show(x) }.join(", ") : pairs.inspect
    end

    # Checks one oracle answer against the engine: next_time chained from
    # `from`, next_times, previous_time from `from` and from each later fire
    # time, and match? at each expected fire time and the second after it.
    # With `fractional`, `from` is moved by half a second where that cannot
    # change the answer (+0.5 s for next, -0.5 s for previous): fire times are
    # whole seconds strictly after/before `from`.
    def compare(cron, res, where, fractional)
      from = res.fetch("from")
      after = fractional ? Time.at(Rational(2 * from + 1, 2)) : Time.at(from)
      before = fractional ? Time.at(Rational(2 * from - 1, 2)) : Time.at(from)
      where += " (shifted by half a second)" if fractional
      compare_next(cron, after, res.fetch("next"), where)
      compare_previous(cron, before, res.fetch("previous"), res.fetch("next"), where)
      compare_match(cron, res.fetch("next"), res.fetch("skipped", []),
                    "#{res.fetch('expr').inspect} zone=#{cron.time_zone}")
    end

    def compare_next(cron, after, expected, where)
      @checks[:next] += 1
      got = []
      at = after
      expected.size.times do
        at = engine { cron.next_time(at) }
        got << pair(at)
        break unless at.is_a?(Time)
      end
      @problems[:next] << "#{where}: expected #{show_all(expected)}; got #{show_all(got)}" unless got == expected

      listed = engine { cron.next_times(after, count: expected.size) }
      listed = listed.map { |t| pair(t) } if listed.is_a?(Array)
      return if listed == expected

      @problems[:next] << "#{where}: next_times(count: #{expected.size}): expected #{show_all(expected)}; " \
                          "got #{show_all(listed)}"
    end

    def compare_previous(cron, before, expected, nexts, where)
      @checks[:previous] += 1
      got = pair(engine { cron.previous_time(before) })
      @problems[:previous] << "#{where}: expected #{show(expected)}; got #{show(got)}" unless got == expected

      # Walking back from each later fire time lands on the one before it.
      nexts.each_cons(2) do |earlier, later|
        @checks[:previous] += 1
        back = pair(engine { cron.previous_time(Time.at(later[0])) })
        next if back == earlier

        @problems[:previous] << "#{where}: previous_time(#{show(later)}): expected #{show(earlier)}; got #{show(back)}"
      end
    end

    def compare_match(cron, nexts, skipped, what)
      probes = skipped.map { |t| [t, false] }
      @checks[:skipped] += skipped.size
      nexts.each_with_index do |(t, _), i|
        probes << [t, true]
        probes << [t + 1, false] if nexts[i + 1] && t + 1 < nexts[i + 1][0]
      end
      probes.each do |probe, want|
        @checks[:match] += 1
        answer = engine { cron.match?(Time.at(probe)) }
        next if answer == want

        @problems[:match] << "#{what} match?(#{Time.at(probe).utc.iso8601} (#{probe})): expected #{want}, " \
                             "got #{answer.inspect}"
      end
    end

    def report(kind, what, shown = 25)
      list = @problems[kind]
      "seed #{@seed} (rerun with KAAL_CRON_SEED=#{@seed}): #{list.size} disagreements in " \
        "#{@checks[what]} #{what} checks; first ones (expression, zone, from, expected, got):\n  " +
        list.first(shown).join("\n  ")
    end

    it "runs the oracle over at least #{random_count} random expressions and the fixed cases in every zone" do
      expect(@random_exprs.size).to be >= 1000
      expect(@replies.map { |r| r["zone"] }).to eq(zones)
      expect(@replies.map { |r| r["results"].size }.sum).to be > 15_000
      expect(@problems[:oracle]).to be_empty, report(:oracle, :parse)
      # Enough answers come from the DST-gap rule and from repeated wall times.
      expect(@checks[:gap]).to be >= 250
      expect(@checks[:overlap]).to be >= 250
      expect(@checks[:skipped]).to be >= 100
      # Every zone that changes its clocks in 1970-2100 was seen doing so.
      transitions = @replies.to_h { |r| [r["zone"], r["transitions"]] }
      expect(transitions.reject { |_, n| n.positive? }.keys).to contain_exactly("UTC", "Asia/Kolkata")
    end

    it "accepts every expression the oracle accepts" do
      expect(@problems[:parse]).to be_empty, report(:parse, :parse)
    end

    it "agrees on next_time (#{chained} chained calls, instant and UTC offset)" do
      expect(@checks[:next]).to be > 15_000
      expect(@problems[:next]).to be_empty, report(:next, :next)
    end

    it "agrees on previous_time (instant and UTC offset)" do
      expect(@checks[:previous]).to be > 15_000
      expect(@problems[:previous]).to be_empty, report(:previous, :previous)
    end

    it "agrees on match? at each fire time, the second after it, and repeated wall times it skips" do
      expect(@problems[:match]).to be_empty, report(:match, :match)
    end

    it "rejects what the oracle rejects, naming the field (corrupted random expressions)" do
      rng = Random.new(@seed)
      checked = 0
      wrong = []
      @random_exprs.reject { |text| text.start_with?("@") }.first(400).each do |text|
        fields = text.split
        names = corruptions.keys
        names = names.drop(1) if fields.size == 5
        index = rng.rand(fields.size)
        field = names[index]
        fields[index] = corruptions[field].sample(random: rng)
        bad = fields.join(" ")
        expect { CronOracle::Expr.new(bad) }.to raise_error(CronOracle::InvalidExpression), bad
        checked += 1
        begin
          Kaal::Cron.parse(bad, time_zone: "UTC")
          wrong << "#{bad.inspect}: accepted"
        rescue Kaal::CronSyntaxError => e
          # A bad last token may be read as a trailing zone name instead.
          next if index == fields.size - 1 || e.message.include?(field)

          wrong << "#{bad.inspect}: message does not name the #{field} field: #{e.message}"
        end
      end
      [1, 2, 3, 4, 7].each do |n| # wrong field counts (7: six fields and a zone "1")
        bad = Array.new(n, "1").join(" ")
        wrong << "#{bad.inspect}: accepted" if Kaal::Cron.valid?(bad)
      end
      expect(checked).to eq(400)
      expect(wrong).to be_empty, "seed #{@seed}: #{wrong.size} disagreements:\n  #{wrong.first(25).join("\n  ")}"
    end

    it "rejects expressions the oracle proves never fire (400-year Gregorian cycle)" do
      accepted = @never_exprs.reject do |text|
        expect(CronOracle::Expr.new(text).fires?).to be(false)
        Kaal::Cron.parse(text, time_zone: "UTC")
      rescue Kaal::CronSyntaxError
        true
      end
      expect(accepted).to be_empty, "seed #{@seed}: accepted never-firing expressions: #{accepted.inspect}"
    end
  end

  describe "the oracle itself" do
    def days(text, year, month)
      CronOracle::Expr.new(text).month_days(year, month)
    end

    it "matches days by the contract's calendar rules" do
      expect(days("0 0 LW * *", 2026, 2)).to eq([27])          # Feb 28 2026 is a Saturday
      expect(days("0 0 LW * *", 2026, 8)).to eq([31])
      expect(days("0 0 15W * *", 2026, 8)).to eq([14])         # Aug 15 is a Saturday
      expect(days("0 0 1W * *", 2026, 8)).to eq([3])           # never back into July
      expect(days("0 0 1W * *", 2026, 11)).to eq([2])          # Nov 1 is a Sunday
      expect(days("0 0 31W * *", 2026, 5)).to eq([29])         # May 31 is a Sunday
      expect(days("0 0 31W * *", 2026, 2)).to eq([])           # month shorter than 31
      expect(days("0 0 L-2 * *", 2026, 2)).to eq([26])
      expect(days("0 0 * * 5L", 2026, 7)).to eq([31])
      expect(days("0 0 13 * FRI", 2026, 1)).to eq([2, 9, 13, 16, 23, 30]) # OR rule
      expect(days("0 0 */10 * MON", 2026, 8)).to eq([31])                 # AND rule
      expect(days("0 0 * * MON-SUN", 2026, 8)).to eq((1..31).to_a)
      expect(days("0 0 ? * 7", 2026, 3)).to eq([1, 8, 15, 22, 29])
      expect(days("0 0 * * */2", 2026, 3).map { |d| Date.new(2026, 3, d).wday }.uniq.sort).to eq([0, 2, 4, 6])
      expect(CronOracle::Expr.new("0 0 */9 * MON#5").fires?).to be(false)
      expect(CronOracle::Expr.new("0 0 29 2 *").fires?).to be(true)
    end

    it "gives the hand-checked answers around DST changes and skipped days" do
      known = {
        "America/New_York" => [
          ["30 2 * * *", "2026-03-07T12:00:00-05:00",
           %w[2026-03-08T03:30:00-04:00 2026-03-09T02:30:00-04:00 2026-03-10T02:30:00-04:00], "2026-03-07T02:30:00-05:00"],
          ["30 1 * * *", "2026-10-31T12:00:00-04:00",
           %w[2026-11-01T01:30:00-04:00 2026-11-02T01:30:00-05:00 2026-11-03T01:30:00-05:00], "2026-10-31T01:30:00-04:00"],
          ["*/30 1 * * *", "2026-11-01T01:45:00-04:00",
           %w[2026-11-01T01:00:00-05:00 2026-11-01T01:30:00-05:00 2026-11-02T01:00:00-05:00], "2026-11-01T01:30:00-04:00"],
          ["* * * * * *", "2026-11-01T01:59:58-04:00",
           %w[2026-11-01T01:59:59-04:00 2026-11-01T01:00:00-05:00 2026-11-01T01:00:01-05:00], "2026-11-01T01:59:57-04:00"],
          ["5 4 * * SUN#2", "2026-03-01T00:00:00-05:00",
           %w[2026-03-08T04:05:00-04:00 2026-04-12T04:05:00-04:00 2026-05-10T04:05:00-04:00], "2026-02-08T04:05:00-05:00"],
          ["0 0 29 2 *", "2026-03-01T00:00:00-05:00",
           %w[2028-02-29T00:00:00-05:00 2032-02-29T00:00:00-05:00 2036-02-29T00:00:00-05:00], "2024-02-29T00:00:00-05:00"]
        ],
        "Pacific/Apia" => [
          ["0 0 30 12 *", "2011-12-01T00:00:00Z",
           %w[2011-12-31T00:00:00+14:00 2012-12-30T00:00:00+14:00 2013-12-30T00:00:00+14:00], "2010-12-30T00:00:00-10:00"],
          ["30 2 * * *", "2011-12-29T00:00:00Z",
           %w[2011-12-29T02:30:00-10:00 2011-12-31T02:30:00+14:00 2012-01-01T02:30:00+14:00], "2011-12-28T02:30:00-10:00"]
        ],
        "Australia/Lord_Howe" => [
          ["15 2 * * *", "2026-10-03T00:00:00+10:30",
           %w[2026-10-03T02:15:00+10:30 2026-10-04T02:45:00+11:00 2026-10-05T02:15:00+11:00], "2026-10-02T02:15:00+10:30"]
        ],
        "Europe/Dublin" => [
          ["30 1 * * *", "2026-03-28T12:00:00Z",
           %w[2026-03-29T02:30:00+01:00 2026-03-30T01:30:00+01:00 2026-03-31T01:30:00+01:00], "2026-03-28T01:30:00+00:00"],
          ["30 1 * * *", "2026-10-24T12:00:00Z",
           %w[2026-10-25T01:30:00+01:00 2026-10-26T01:30:00+00:00 2026-10-27T01:30:00+00:00], "2026-10-24T01:30:00+01:00"]
        ],
        "Pacific/Chatham" => [
          ["0 3 * * *", "2026-09-26T00:00:00+12:45",
           %w[2026-09-26T03:00:00+12:45 2026-09-27T04:00:00+13:45 2026-09-28T03:00:00+13:45], "2026-09-25T03:00:00+12:45"]
        ],
        "Asia/Kathmandu" => [
          ["10 0 * * *", "1985-12-31T12:00:00+05:30",
           %w[1986-01-01T00:25:00+05:45 1986-01-02T00:10:00+05:45 1986-01-03T00:10:00+05:45], "1985-12-31T00:10:00+05:30"]
        ]
      }
      requests = known.map do |zone, list|
        { "zone" => zone, "seed" => 1, "count" => 3, "cases" => list.map { |text, from| [text, Time.iso8601(from).to_i] } }
      end
      replies = CronOracle.run_workers(requests, parallel: 2)
      got = replies.to_h do |reply|
        [reply["zone"], reply["results"].map { |r| [r["expr"], r["next"].map(&iso), iso.call(r["previous"])] }]
      end
      want = known.transform_values { |list| list.map { |text, _, nexts, prev| [text, nexts, prev] } }
      expect(got).to eq(want)
    end
  end
end

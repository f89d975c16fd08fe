# frozen_string_literal: true

require "json"
require "open3"
require "rbconfig"
require "set"

# An independent model of the cron dialect in docs/cron.md, used by
# spec/kaal/cron_differential_spec.rb to check kaal's C engine. Nothing here
# uses kaal: the parser is its own, the calendar is plain integer arithmetic,
# and time zones come from the operating system (Ruby's Time under ENV["TZ"]).
#
# ENV["TZ"] is process-global, so everything that needs a zone runs in a
# subprocess per zone (spec/support/cron_oracle_worker.rb, started by
# CronOracle.run_workers with TZ in its environment). The parser, the day
# matcher and the expression generator are zone-free and also run in the
# rspec process.
module CronOracle
  class InvalidExpression < StandardError; end

  # The oracle itself failed (never expected; reported, not hidden).
  class OracleError < StandardError; end

  MONTH_NAMES = %w[JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC].freeze
  DAY_NAMES = %w[SUN MON TUE WED THU FRI SAT].freeze
  MACROS = {
    "@yearly" => "0 0 1 1 *", "@annually" => "0 0 1 1 *", "@monthly" => "0 0 1 * *",
    "@weekly" => "0 0 * * 0", "@daily" => "0 0 * * *", "@midnight" => "0 0 * * *",
    "@hourly" => "0 * * * *"
  }.freeze
  # [name for messages, lowest value, highest value]
  FIELDS = {
    sec: ["second", 0, 59], min: ["minute", 0, 59], hour: ["hour", 0, 23],
    dom: ["day of month", 1, 31], month: ["month", 1, 12], dow: ["day of week", 0, 7]
  }.freeze

  # Proleptic Gregorian calendar on day numbers (days since 1970-01-01).
  module Calendar
    module_function

    def days_from_civil(year, month, day)
      year -= 1 if month <= 2
      era = year.div(400)
      yoe = year - era * 400
      doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
      doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
      era * 146_097 + doe - 719_468
    end

    def civil_from_days(days)
      days += 719_468
      era = days.div(146_097)
      doe = days - era * 146_097
      yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
      doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
      mp = (5 * doy + 2) / 153
      day = doy - (153 * mp + 2) / 5 + 1
      month = mp < 10 ? mp + 3 : mp - 9
      year = yoe + era * 400
      [month <= 2 ? year + 1 : year, month, day]
    end

    def leap?(year)
      (year % 4).zero? && (year % 100 != 0 || (year % 400).zero?)
    end

    def month_length(year, month)
      return leap?(year) ? 29 : 28 if month == 2

      [4, 6, 9, 11].include?(month) ? 30 : 31
    end

    # 0 = Sunday (1970-01-01 was a Thursday).
    def wday(days)
      (days + 4) % 7
    end
  end

  # A parsed expression: plain sorted arrays and sets, plus the day-of-month /
  # day-of-week extras, matched day by day.
  class Expr
    attr_reader :text, :seconds, :minutes, :hours, :months, :fixed_time

    def initialize(text)
      @text = text
      @days = Set.new
      @last_offsets = Set.new
      @near = Set.new
      @last_weekday = false
      @wdays = Set.new
      @last_dow = Set.new
      @nth = Set.new
      @month_memo = {}
      parse(text)
    end

    # Whether day `day` of `month` matches (`wday` is its weekday, `last` the
    # month's length). The hours/minutes/seconds are never empty, so a day
    # that matches always fires.
    def day_match?(month, day, wday, last)
      return false unless @months.include?(month)

      dom = dom_match?(day, wday, last)
      dow = dow_match?(day, wday, last)
      @dom_star || @dow_star ? dom && dow : dom || dow
    end

    # The matching days of a month, ascending.
    def month_days(year, month)
      last = Calendar.month_length(year, month)
      first = Calendar.wday(Calendar.days_from_civil(year, month, 1))
      days_for(month, last, first)
    end

    # Whether the expression fires at all. Which days of a month match
    # depends only on the month, its length and the weekday of its first day,
    # and every such combination occurs in every 400-year Gregorian cycle.
    def fires?
      @months.any? do |month|
        lengths = if month == 2 then [28, 29]
                  elsif [4, 6, 9, 11].include?(month) then [30]
                  else [31]
                  end
        lengths.product((0..6).to_a).any? { |last, first| !days_for(month, last, first).empty? }
      end
    end

    private

    def days_for(month, last, first)
      @month_memo[[month, last, first]] ||=
        (1..last).select { |d| day_match?(month, d, (first + d - 1) % 7, last) }.freeze
    end

    def weekday_of(day, ref_day, ref_wday)
      (ref_wday + day - ref_day) % 7
    end

    def dom_match?(day, wday, last)
      return true if @days.include?(day)
      return true if @last_offsets.any? { |n| last - n == day }
      return true if @near.any? { |n| nearest_weekday(n, day, wday, last) == day }
      return true if @last_weekday && nearest_weekday_back(last, day, wday) == day

      false
    end

    # nW: the weekday nearest to day n, never leaving the month; nil when the
    # month has fewer than n days.
    def nearest_weekday(n, day, wday, last)
      return nil if n > last

      case weekday_of(n, day, wday)
      when 6 then n == 1 ? 3 : n - 1
      when 0 then n == last ? n - 2 : n + 1
      else n
      end
    end

    # LW: the last weekday (Monday-Friday) of the month.
    def nearest_weekday_back(last, day, wday)
      case weekday_of(last, day, wday)
      when 6 then last - 1
      when 0 then last - 2
      else last
      end
    end

    def dow_match?(day, wday, last)
      return true if @wdays.include?(wday)
      return true if @last_dow.include?(wday) && day + 7 > last

      @nth.include?([wday, (day - 1) / 7 + 1])
    end

    def parse(text)
      tokens = text.strip.split(/\s+/)
      raise InvalidExpression, "empty expression" if tokens.empty?

      if tokens.first.start_with?("@")
        macro = MACROS[tokens.first.downcase]
        raise InvalidExpression, "unknown macro #{tokens.first}" unless macro && tokens.size == 1

        tokens = macro.split
      end
      raise InvalidExpression, "wrong field count #{tokens.size}" unless [5, 6].include?(tokens.size)

      tokens.unshift("0") if tokens.size == 5
      sec, min, hour, dom, month, dow = tokens
      @seconds = field_values(:sec, sec).sort.freeze
      @minutes = field_values(:min, min).sort.freeze
      @hours = field_values(:hour, hour).sort.freeze
      @days = field_values(:dom, dom)
      @months = field_values(:month, month)
      @wdays = field_values(:dow, dow).map { |v| v % 7 }.to_set
      @dom_star = dom.start_with?("*", "?")
      @dow_star = dow.start_with?("*", "?")
      @fixed_time = !min.start_with?("*") && !hour.start_with?("*")
    end

    def field_values(kind, text)
      values = Set.new
      text.split(",", -1).each do |item|
        raise InvalidExpression, "empty item in #{FIELDS[kind][0]}" if item.empty?
        next if kind == :dom && dom_extra(item)
        next if kind == :dow && dow_extra(item)

        from, to, step = item_range(kind, item)
        from.step(to, step) { |v| values << v }
      end
      values
    end

    def item_range(kind, item)
      _, lo, hi = FIELDS[kind]
      top = kind == :dow ? 6 : hi
      base, step, extra = item.split("/", -1)
      raise InvalidExpression, "bad item #{item}" if extra || base.nil? || base.empty?

      step = step && number(step)
      raise InvalidExpression, "step 0 in #{item}" if step&.zero?

      if base == "*" || (base == "?" && %i[dom dow].include?(kind))
        from = lo
        to = top
      elsif base.include?("-")
        a, b, more = base.split("-", -1)
        raise InvalidExpression, "bad range #{item}" if more || a.to_s.empty? || b.to_s.empty?

        from = value(kind, a)
        to = value(kind, b)
        to = 7 if kind == :dow && b.casecmp?("SUN")
        raise InvalidExpression, "descending range #{item}" if from > to
      else
        from = value(kind, base)
        to = step ? [top, from].max : from # "7/2" in day of week: 7 is written, so Sunday
      end
      [from, to, step || 1]
    end

    def dom_extra(item)
      case item.upcase
      when "L" then @last_offsets << 0
      when "LW" then @last_weekday = true
      when /\AL-(\d+)\z/
        n = Regexp.last_match(1).to_i
        raise InvalidExpression, "bad #{item}" unless n.between?(0, 30)

        @last_offsets << n
      when /\A(\d+)W\z/
        n = Regexp.last_match(1).to_i
        raise InvalidExpression, "bad #{item}" unless n.between?(1, 31)

        @near << n
      else return false
      end
      true
    end

    def dow_extra(item)
      case item.upcase
      when /\A(\w+)#(\d+)\z/
        k = Regexp.last_match(2).to_i
        raise InvalidExpression, "bad #{item}" unless k.between?(1, 5)

        @nth << [value(:dow, Regexp.last_match(1)) % 7, k]
      when /\A(\w+)L\z/
        @last_dow << value(:dow, Regexp.last_match(1)) % 7
      else return false
      end
      true
    end

    def value(kind, token)
      name, lo, hi = FIELDS[kind]
      if token.match?(/\A\d+\z/)
        v = token.to_i
        raise InvalidExpression, "#{token} out of range in #{name}" unless v.between?(lo, hi)

        return v
      end
      names = { month: MONTH_NAMES, dow: DAY_NAMES }[kind]
      index = names&.index(token.upcase)
      raise InvalidExpression, "unknown #{name} #{token}" unless index

      kind == :month ? index + 1 : index
    end

    def number(token)
      raise InvalidExpression, "bad number #{token}" unless token.match?(/\A\d+\z/)

      token.to_i
    end
  end

  # Fire times in the zone named by ENV["TZ"], from the operating system's
  # view of that zone (Time.at(t).utc_offset). Only used in a worker process.
  #
  # "Wall seconds" count the zone's wall clock as if it were UTC. The walk
  # goes day by day over matching calendar days (month by month, skipping
  # months and days that cannot match), then over hours/minutes/seconds of
  # the sets, converting each wall time to its instants.
  class Zone
    MARGIN = 16 * 3600 # larger than any UTC offset since 1900
    SAMPLE = 1800      # offsets are sampled every 30 minutes around a day
                       # (no zone changes its offset twice within 30 minutes)
    YEARS = 500        # a walk never goes further than this

    # Instants produced by the DST-gap rule (:gap) or as one of two instants
    # of a repeated wall time (:overlap), and later instants of a repeated
    # wall time that a fixed-time expression does not fire at (:skipped),
    # since the last reset_marks: lets the spec check that the random cases
    # exercise these rules.
    attr_reader :marks

    def initialize
      @regimes = {}
      @marks = {}
    end

    def reset_marks
      @marks = {}
    end

    def offset(t)
      Time.at(t).utc_offset
    end

    def wall(t)
      t + offset(t)
    end

    # The first n fire times strictly after `from` (fewer if none within YEARS).
    def next_times(expr, from, n)
      found = []
      start = (from - MARGIN).div(86_400)
      limit = start + YEARS * 366
      year, month, first_day = Calendar.civil_from_days(start)
      loop do
        month_start = Calendar.days_from_civil(year, month, 1)
        return found.first(n) if done_next?(found, n, month_start) || month_start > limit

        if expr.months.include?(month)
          expr.month_days(year, month).each do |day|
            next if day < first_day

            dn = month_start + day - 1
            return found.first(n) if done_next?(found, n, dn)

            walk_day_next(expr, dn, from, found, n)
          end
        end
        first_day = 1
        month += 1
        next if month <= 12

        month = 1
        year += 1
      end
    end

    # The last fire time strictly before `from` (nil if none within YEARS).
    def previous_time(expr, from)
      best = nil
      start = (from + MARGIN).div(86_400)
      limit = start - YEARS * 366
      year, month, last_day = Calendar.civil_from_days(start)
      loop do
        month_end = Calendar.days_from_civil(year, month, Calendar.month_length(year, month))
        return best if (best && best >= (month_end + 1) * 86_400 + MARGIN) || month_end < limit

        if expr.months.include?(month)
          month_start = Calendar.days_from_civil(year, month, 1)
          expr.month_days(year, month).reverse_each do |day|
            next if day > last_day

            dn = month_start + day - 1
            return best if best && best >= (dn + 1) * 86_400 + MARGIN

            best = walk_day_previous(expr, dn, from, best)
          end
        end
        last_day = 31
        month -= 1
        next if month >= 1

        month = 12
        year -= 1
      end
    end

    # The instants at which wall time `w` fires, given the regimes around it:
    # every instant whose wall clock (from Time.at) is w, two in an overlap,
    # earlier first; in a gap, w minus the offset in force before the gap.
    def instants(w, regimes)
      found = regimes.map { |_, _, o| w - o }.uniq.select { |t| wall(t) == w }.sort
      return found unless found.empty?

      regimes.each_cons(2) do |(_, _, before), (start, _, after)|
        return [w - before] if after > before && w >= start + before && w < start + after
      end
      raise OracleError, "wall time #{w} neither exists nor falls in a gap"
    end

    # Transitions (instant, offset before, offset after) between two instants,
    # sampled every `step` seconds and pinned down by bisection.
    def transitions(from, to, step = 43_200)
      list = []
      t = from
      prev = offset(t)
      while t < to
        nxt = t + step
        off = offset(nxt)
        if off != prev
          lo = t
          hi = nxt
          while hi - lo > 1
            mid = (lo + hi) / 2
            offset(mid) == prev ? lo = mid : hi = mid
          end
          list << [hi, prev, offset(hi)]
        end
        prev = off
        t = nxt
      end
      list
    end

    private

    def done_next?(found, n, day)
      found.size >= n && found[n - 1] < day * 86_400 - MARGIN
    end

    # The zone's regimes [first instant, last instant, offset] over every
    # instant whose wall time can fall on day `dn`: offsets sampled every
    # SAMPLE seconds with Time.at, changes pinned down by bisection.
    def regimes_for(dn)
      @regimes.clear if @regimes.size > 4096
      @regimes[dn] ||= begin
        from = dn * 86_400 - MARGIN - SAMPLE
        to = (dn + 1) * 86_400 + MARGIN + SAMPLE
        list = []
        start = from
        transitions(from, to, SAMPLE).each do |at, before, _|
          list << [start, at - 1, before].freeze
          start = at
        end
        list << [start, to, offset(to)].freeze
        list.freeze
      end
    end

    # The earliest and latest instant at which any wall time in [a, b] fires
    # (an existing wall time at its instants, a gap wall time at the gap
    # rule's instant); nil when none does.
    def bounds(regimes, a, b)
      lo = hi = nil
      widen = lambda do |x, y, o|
        return if x > y

        lo = x - o if lo.nil? || x - o < lo
        hi = y - o if hi.nil? || y - o > hi
      end
      regimes.each_with_index do |(first, last, o), i|
        widen.call([a, first + o].max, [b, last + o].min, o)
        before = i.positive? ? regimes[i - 1][2] : o
        widen.call([a, first + before].max, [b, first + o - 1].min, before) if o > before
      end
      [lo, hi]
    end

    def fires(expr, w, regimes)
      list = instants(w, regimes)
      if list.size == 2
        list.each { |t| @marks[t] ||= :overlap }
        @marks[list[1]] = :skipped if expr.fixed_time
      elsif wall(list[0]) != w
        @marks[list[0]] ||= :gap
      end
      expr.fixed_time ? list.first(1) : list
    end

    # Adds to `found` (sorted) the fire times after `from` of day `dn`,
    # stopping once every later wall time of the day fires after found[n - 1].
    def walk_day_next(expr, dn, from, found, n)
      regimes = regimes_for(dn)
      base = dn * 86_400
      day_end = base + 86_399
      beyond = ->(a) { found.size >= n && bounds(regimes, a, day_end)[0] > found[n - 1] }
      expr.hours.each do |h|
        hb = base + h * 3600
        next if bounds(regimes, hb, hb + 3599)[1] <= from
        break if beyond.call(hb)

        expr.minutes.each do |m|
          mb = hb + m * 60
          next if bounds(regimes, mb, mb + 59)[1] <= from
          break if beyond.call(mb)

          expr.seconds.each do |s|
            w = mb + s
            break if beyond.call(w)

            fires(expr, w, regimes).each do |t|
              next if t <= from || found.include?(t)

              found << t
              found.sort!
            end
          end
        end
      end
    end

    # The latest fire time before `from` of day `dn`, or `best` when none is
    # later than it.
    def walk_day_previous(expr, dn, from, best)
      regimes = regimes_for(dn)
      base = dn * 86_400
      below = ->(b) { best && bounds(regimes, base, b)[1] <= best }
      expr.hours.reverse_each do |h|
        hb = base + h * 3600
        next if bounds(regimes, hb, hb + 3599)[0] >= from
        break if below.call(hb + 3599)

        expr.minutes.reverse_each do |m|
          mb = hb + m * 60
          next if bounds(regimes, mb, mb + 59)[0] >= from
          break if below.call(mb + 59)

          expr.seconds.reverse_each do |s|
            w = mb + s
            break if below.call(w)

            fires(expr, w, regimes).each do |t|
              best = t if t < from && (best.nil? || t > best)
            end
          end
        end
      end
      best
    end
  end

  # Random valid expressions mixing every feature of the syntax. Hours and
  # minutes lean towards the times zones change their clocks at.
  module Generator
    HOURS = [0, 1, 2, 3, 4, 22, 23].freeze
    MINUTES = [0, 1, 15, 29, 30, 44, 45, 59].freeze
    STEPS = [1, 2, 3, 5, 7, 10, 15, 20, 30, 45].freeze

    module_function

    def expression(rng)
      return MACROS.keys.sample(random: rng) if rng.rand < 0.03

      fields = []
      fields << time_field(rng, 59, MINUTES) if rng.rand < 0.3
      fields << time_field(rng, 59, MINUTES)
      fields << time_field(rng, 23, HOURS)
      fields << dom_field(rng) << month_field(rng) << dow_field(rng)
      fields.join(" ")
    end

    def pick(rng, choices)
      total = choices.sum(&:first)
      roll = rng.rand * total
      choices.each do |weight, block|
        return block.call if roll < weight

        roll -= weight
      end
      choices.last.last.call
    end

    def biased(rng, top, favourites)
      rng.rand < 0.6 ? favourites.select { |v| v <= top }.sample(random: rng) : rng.rand(0..top)
    end

    def span(rng, lo, hi)
      a = rng.rand(lo..hi)
      [a, rng.rand(a..hi)]
    end

    # A step no larger than the field's number of values (kaal rejects
    # larger ones, e.g. "1/30" in hours; see docs/cron.md, "Items").
    def step(rng, top)
      STEPS.select { |s| s <= top + 1 }.sample(random: rng)
    end

    def time_field(rng, top, favourites)
      simple = lambda do
        pick(rng, [[3, -> { biased(rng, top, favourites).to_s }],
                   [1, -> { span(rng, 0, top).join("-") }]])
      end
      pick(rng, [
             [3, -> { "*" }],
             [4, -> { biased(rng, top, favourites).to_s }],
             [2, -> { "*/#{step(rng, top)}" }],
             [2, -> { span(rng, 0, top).join("-") }],
             [1, -> { "#{span(rng, 0, top).join('-')}/#{step(rng, top)}" }],
             [1, -> { "#{biased(rng, top, favourites)}/#{step(rng, top)}" }],
             [2, -> { Array.new(rng.rand(2..3)) { simple.call }.join(",") }]
           ])
    end

    def dom_field(rng)
      single = lambda do
        pick(rng, [[3, -> { rng.rand(1..31).to_s }], [1, -> { "L" }], [1, -> { "L-#{rng.rand(0..30)}" }],
                   [1, -> { "#{rng.rand(1..31)}W" }], [1, -> { "LW" }], [1, -> { span(rng, 1, 31).join("-") }]])
      end
      pick(rng, [
             [12, -> { "*" }], [2, -> { "?" }],
             [3, -> { rng.rand(1..31).to_s }],
             [2, -> { span(rng, 1, 31).join("-") }],
             [2, -> { "*/#{rng.rand(2..15)}" }],
             [1, -> { "#{rng.rand(1..31)}/#{rng.rand(1..10)}" }],
             [1, -> { "#{span(rng, 1, 31).join('-')}/#{rng.rand(1..10)}" }],
             [2, -> { "L" }], [2, -> { "L-#{rng.rand(0..30)}" }], [2, -> { "#{rng.rand(1..31)}W" }], [2, -> { "LW" }],
             [2, -> { Array.new(rng.rand(2..3)) { single.call }.join(",") }]
           ])
    end

    def month_name(rng, month)
      name = MONTH_NAMES[month - 1]
      [name, name.downcase, name.capitalize, month.to_s].sample(random: rng)
    end

    def day_name(rng, day)
      name = DAY_NAMES[day % 7]
      [name, name.downcase, name.capitalize, day.to_s].sample(random: rng)
    end

    def month_field(rng)
      pick(rng, [
             [10, -> { "*" }],
             [3, -> { month_name(rng, rng.rand(1..12)) }],
             [2, -> { span(rng, 1, 12).map { |m| month_name(rng, m) }.join("-") }],
             [1, -> { "*/#{rng.rand(2..6)}" }],
             [1, -> { "#{month_name(rng, rng.rand(1..12))}/#{rng.rand(1..5)}" }],
             [1, -> { "#{span(rng, 1, 12).map { |m| month_name(rng, m) }.join('-')}/#{rng.rand(1..4)}" }],
             [2, -> { Array.new(rng.rand(2..4)) { month_name(rng, rng.rand(1..12)) }.join(",") }]
           ])
    end

    # A range of weekday names. Never SUN-SUN: "a range ending in SUN runs
    # to 7" could make it every day, kaal reads it as Sundays only
    # (docs/cron.md, "Items"); the oracle does not model that case.
    def name_range(rng)
      a, b = span(rng, 0, 6)
      b = rng.rand(1..6) if b.zero?
      [a, b].map { |d| day_name(rng, d) }.join("-")
    end

    def dow_field(rng)
      single = lambda do
        pick(rng, [[3, -> { day_name(rng, rng.rand(0..7)) }], [1, -> { "#{rng.rand(0..7)}L" }],
                   [1, -> { "#{day_name(rng, rng.rand(0..6))}##{rng.rand(1..5)}" }],
                   [1, -> { span(rng, 0, 7).join("-") }]])
      end
      pick(rng, [
             [14, -> { "*" }], [2, -> { "?" }],
             [3, -> { day_name(rng, rng.rand(0..7)) }],
             [2, -> { span(rng, 0, 7).join("-") }],
             [1, -> { name_range(rng) }],
             [2, -> { "#{day_name(rng, rng.rand(1..6))}-#{%w[SUN sun Sun].sample(random: rng)}" }],
             [1, -> { "*/#{rng.rand(2..4)}" }],
             [1, -> { "#{day_name(rng, rng.rand(0..6))}/#{rng.rand(1..4)}" }],
             [1, -> { "#{span(rng, 0, 7).join('-')}/#{rng.rand(1..3)}" }],
             [2, -> { "#{rng.rand(0..7)}L" }],
             [2, -> { "#{day_name(rng, rng.rand(0..7))}##{rng.rand(1..5)}" }],
             [2, -> { Array.new(rng.rand(2..3)) { single.call }.join(",") }]
           ])
    end
  end

  WORKER = File.expand_path("cron_oracle_worker.rb", __dir__)

  module_function

  def zone_file?(zone)
    return true if zone == "UTC"

    dir = ENV.fetch("TZDIR", "/usr/share/zoneinfo")
    File.file?(File.join(dir, zone))
  end

  # Run one worker per request ({"zone" => ..., ...}), at most `parallel` at a
  # time; returns the parsed replies in request order. TZ is set only in the
  # child's environment.
  def run_workers(requests, parallel: 2)
    queue = Queue.new
    requests.each_with_index { |req, i| queue << [req, i] }
    replies = Array.new(requests.size)
    threads = Array.new([parallel, requests.size].min) do
      Thread.new do
        loop do
          req, i = queue.pop(true)
          replies[i] = run_worker(req)
        end
      rescue ThreadError
        nil
      end
    end
    threads.each(&:join)
    replies
  end

  def run_worker(request)
    zone = request.fetch("zone")
    raise OracleError, "no zone file for #{zone}" unless zone_file?(zone)

    env = { "TZ" => zone, "RUBYOPT" => nil }
    out, err, status = Open3.capture3(env, RbConfig.ruby, "-w", WORKER, stdin_data: JSON.generate(request))
    raise OracleError, "oracle worker for #{zone} failed (#{status}):\n#{err}" unless status.success?
    raise OracleError, "oracle worker for #{zone} wrote to stderr:\n#{err}" unless err.empty?

    JSON.parse(out)
  end
end

# frozen_string_literal: true

module Kaal
  class Cron
    # Turns a cron expression that the C parser has already validated into one
    # English sentence. It reads the expression text (not the bitsets) so the
    # sentence keeps the author's intent: "*/15" is "every 15 minutes", not a
    # list of four minutes.
    #
    # The sentence is built from three parts, each optional:
    #
    #   time of day   "At 09:00", "Every 15 minutes between 09:00 and 17:59"
    #   days          "on Monday through Friday", "on the last day of the month"
    #   months        "in January and July"
    #
    # followed by the zone in parentheses.
    class Explainer
      MACROS = {
        "@yearly" => "0 0 1 1 *", "@annually" => "0 0 1 1 *", "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0", "@daily" => "0 0 * * *", "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *"
      }.freeze

      MONTHS = %w[January February March April May June July August September October
                  November December].freeze
      MONTH_ABBR = %w[JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC].freeze
      DAYS = %w[Sunday Monday Tuesday Wednesday Thursday Friday Saturday].freeze
      DAY_ABBR = %w[SUN MON TUE WED THU FRI SAT].freeze
      NTH = %w[zeroth first second third fourth fifth sixth seventh eighth ninth tenth].freeze

      # How many (hour, minute, second) combinations are listed as clock times
      # ("At 09:00, 12:00 and 17:00") before switching to a descriptive form.
      MAX_LISTED_TIMES = 6

      # One comma-separated item of a field. kind is :single (a), :range (a..b),
      # :step (a..b every step; star is true for "*/s"), or a day extra
      # (:last, :last_offset, :nearest, :last_weekday, :last_dow, :nth_dow).
      Item = Struct.new(:kind, :a, :b, :step, :star, keyword_init: true) do
        def values
          case kind
          when :single then [a]
          when :range then (a..b).to_a
          when :step then (a..b).step(step).to_a
          else []
          end
        end

        def plain?
          %i[single range step].include?(kind)
        end
      end

      # A field: its text and items. star? is true when the text starts with
      # "*" or "?" (the day-of-month/day-of-week rule looks at that).
      Field = Struct.new(:text, :items, :min, :max) do
        def star?
          text.start_with?("*", "?")
        end

        # "*" or "?" alone: the field does not restrict.
        def every?
          text == "*" || text == "?"
        end

        def single?
          items.size == 1 && items[0].kind == :single
        end

        def plain?
          items.all?(&:plain?)
        end

        def values
          items.flat_map(&:values).uniq.sort
        end

        # "*/s" over a field whose size s divides: the values are evenly spaced
        # around the clock, so "every s minutes" is exact.
        def even_step
          item = items[0]
          return nil unless items.size == 1 && item.kind == :step && item.star
          return nil unless ((max - min + 1) % item.step).zero?

          item.step
        end
      end

      # expression: the text the C parser accepted; seconds: whether it has
      # the 6-field form; zone_in_text: whether it ends with a zone name.
      def initialize(expression, time_zone, seconds:, zone_in_text:)
        @zone = time_zone
        tokens = expression.strip.split(/\s+/)
        tokens.pop if zone_in_text
        tokens = MACROS.fetch(tokens[0].downcase).split if tokens[0]&.start_with?("@")
        tokens.unshift(nil) unless seconds
        sec, min, hour, dom, mon, dow = tokens
        @seconds = sec && field(sec, 0, 59)
        @seconds = nil if @seconds&.single? && @seconds.items[0].a.zero?
        @minutes = field(min, 0, 59)
        @hours = field(hour, 0, 23)
        @dom = field(dom, 1, 31, :dom)
        @months = field(mon, 1, 12, :month)
        @dow = field(dow, 0, 6, :dow)
      end

      # What the explainer understood, in the shape of Kaal::Cron#__fields
      # (the C parser's bitsets), so tests can check the two agree.
      def fields
        dom_items = @dom.items
        dow_items = @dow.items
        {
          seconds: @seconds ? @seconds.values : [0], minutes: @minutes.values, hours: @hours.values,
          days: @dom.values, months: @months.values, weekdays: @dow.values.map { |v| v % 7 }.uniq.sort,
          last_offsets: dom_items.filter_map { |i| { last: 0, last_offset: i.a }[i.kind] }.uniq.sort,
          nearest_weekday: dom_items.select { |i| i.kind == :nearest }.map(&:a).uniq.sort,
          last_dow: dow_items.select { |i| i.kind == :last_dow }.map(&:a).uniq.sort,
          nth_dow: dow_items.select { |i| i.kind == :nth_dow }.map { |i| [i.a, i.b] }.uniq.sort,
          last_weekday: dom_items.any? { |i| i.kind == :last_weekday }
        }
      end

      def to_s
        time = time_phrase
        days = day_phrase
        months = month_phrase
        parts = [time]
        parts << "every day" if days.nil? && @point_in_time
        # With the either-day rule the month goes first, so that it plainly
        # applies to both days: "in January, on day 1 of the month or on Monday".
        parts = days&.include?(" or on ") && months ? parts + ["#{months},", days] : parts + [days, months]
        sentence = parts.compact.join(" ")
        "#{sentence[0].upcase}#{sentence[1..]} (#{@zone})"
      end

      private

      # -- parsing the (already valid) text ---------------------------------

      def field(text, min, max, kind = nil)
        items = text.split(",").map { |item| parse_item(item.upcase, min, max, kind) }
        Field.new(text, items, min, max)
      end

      def parse_item(text, min, max, kind)
        if kind == :dom
          return Item.new(kind: :last_weekday) if text == "LW"
          return Item.new(kind: :last) if text == "L"
          return Item.new(kind: :last_offset, a: Integer(Regexp.last_match(1), 10)) if text =~ /\AL-(\d+)\z/
          return Item.new(kind: :nearest, a: Integer(Regexp.last_match(1), 10)) if text =~ /\A(\d+)W\z/
        elsif kind == :dow
          return Item.new(kind: :last_dow, a: number(Regexp.last_match(1), kind) % 7) if text =~ /\A(\w+?)L\z/ && text != "L"
          if text =~ /\A(\w+)#(\d)\z/
            return Item.new(kind: :nth_dow, a: number(Regexp.last_match(1), kind) % 7, b: Integer(Regexp.last_match(2), 10))
          end
        end
        range, step = text.split("/", 2)
        step &&= Integer(step, 10)
        star = ["*", "?"].include?(range)
        if star
          a = min
          b = max
        elsif range.include?("-")
          first, last = range.split("-", 2)
          a = number(first, kind)
          b = number(last, kind)
          b = 7 if kind == :dow && last == "SUN" && a.positive? # MON-SUN ends on Sunday; SUN-SUN is Sunday
        else
          a = number(range, kind)
          b = step ? [max, a].max : a # 7/2 in day of week: 7 is Sunday, the step goes nowhere
        end
        return Item.new(kind: :step, a: a, b: b, step: step, star: star) if step
        return Item.new(kind: :range, a: a, b: b, star: star) if star || a != b

        Item.new(kind: :single, a: a)
      end

      def number(text, kind)
        return MONTH_ABBR.index(text) + 1 if kind == :month && MONTH_ABBR.include?(text)
        return DAY_ABBR.index(text) if kind == :dow && DAY_ABBR.include?(text)

        Integer(text, 10)
      end

      # -- time of day --------------------------------------------------------

      def time_phrase
        @point_in_time = false
        return clock_list if listable_times?
        return fixed_minute_phrase if @minutes.single? && (@seconds.nil? || @seconds.single?)

        parts = []
        if @seconds
          parts << unit_phrase(@seconds, "second")
          if @minutes.every?
            parts << "of every minute" unless @seconds.every? || @seconds.even_step
          else
            parts << during_phrase(@minutes, "minute")
            parts << "of every hour" if @hours.every?
          end
        else
          parts << unit_phrase(@minutes, "minute")
          if @hours.every? && !@minutes.even_step && !@minutes.every?
            parts << (parts[0].start_with?("at") ? "past every hour" : "of every hour")
          end
        end
        parts << hour_window unless @hours.every?
        parts.join(" ")
      end

      def listable_times?
        fields = [@seconds, @minutes, @hours].compact
        return false unless fields.all? { |f| !f.star? && f.plain? }

        fields.map { |f| f.values.size }.reduce(:*) <= MAX_LISTED_TIMES
      end

      # "At 09:00 and 17:30"
      def clock_list
        @point_in_time = true
        secs = @seconds ? @seconds.values : [nil]
        times = @hours.values.product(@minutes.values, secs).map { |h, m, s| clock(h, m, s) }
        "at #{join(times)}"
      end

      # Minute (and second) fixed; hours anything else.
      def fixed_minute_phrase
        m = @minutes.items[0].a
        s = @seconds&.items&.first&.a
        if @hours.every?
          return "at minute #{m} past every hour" unless s

          return "at second #{s} of minute #{m} of every hour"
        end
        @point_in_time = true
        parts = @hours.items.map do |item|
          case item.kind
          when :single then clock(item.a, m, s)
          when :range then "every hour from #{clock(item.a, m, s)} through #{clock(item.b, m, s)}"
          else
            values = item.values
            "every #{plural(item.step, "hour")} from #{clock(values.first, m, s)} through #{clock(values.last, m, s)}"
          end
        end
        phrase = join(parts)
        @hours.items[0].kind == :single ? "at #{phrase}" : phrase
      end

      # "every 15 minutes", "at minutes 0 and 30", "at minutes 10 through 20"
      def unit_phrase(field, unit)
        return "every #{unit}" if field.every?
        return "every #{plural(field.even_step, unit)}" if field.even_step

        items = group_singles(field.items)
        parts = items.map do |item|
          case item
          when Array then item.size == 1 ? "#{unit} #{item[0]}" : "#{unit}s #{join(item.map(&:to_s))}"
          else
            if item.kind == :range
              "#{unit}s #{item.a} through #{item.b}"
            else
              values = item.values
              "every #{plural(item.step, unit)} from #{unit} #{values.first} through #{values.last}"
            end
          end
        end
        first = items[0]
        (first.is_a?(Array) || first.kind == :range ? "at " : "") + join(parts)
      end

      # "during minute 5", "during minutes 0 through 29", "during every 15th minute"
      def during_phrase(field, unit)
        step = field.even_step
        return "during every #{ordinal_unit(step, unit)}" if step

        phrase = unit_phrase(field, unit).sub(/\Aat /, "")
        phrase = phrase.gsub(/every (\d+) #{unit}s from/) { "every #{ordinal_unit(Integer(Regexp.last_match(1)), unit)} from" }
        "during #{phrase}"
      end

      def ordinal_unit(step, unit)
        return unit if step == 1
        return "other #{unit}" if step == 2

        "#{ordinal(step)} #{unit}"
      end

      # The hours in which a non-fixed minute (or second) fires.
      def hour_window
        if @hours.items.size == 1 && %i[single range].include?(@hours.items[0].kind)
          item = @hours.items[0]
          last = item.kind == :single ? item.a : item.b
          return "between #{clock(item.a, 0)} and #{clock(last, 59)}"
        end
        values = @hours.values
        "in #{values.size == 1 ? "hour" : "hours"} #{join(values.map(&:to_s))}"
      end

      def clock(h, m, s = nil)
        base = format("%02d:%02d", h, m)
        s ? format("%s:%02d", base, s) : base
      end

      # -- days and months ----------------------------------------------------

      def day_phrase
        return "on #{MONTHS[@months.items[0].a - 1]} #{@dom.items[0].a}" if calendar_date?

        dom = @dom.every? ? nil : dom_phrase
        dow = @dow.every? ? nil : dow_phrase
        return nil if dom.nil? && dow.nil?
        return "on #{dom || dow}" if dom.nil? || dow.nil?
        return "on #{dom} or on #{dow}" unless @dom.star? || @dow.star?

        "on #{dom} if it is #{dow_condition}"
      end

      # One day of one month, every weekday: "on January 1" (and no month phrase).
      def calendar_date?
        @dom.single? && !@dom.star? && @months.single? && @dow.every?
      end

      # "day 1 of the month", "days 1 through 7 and the last day of the month"
      def dom_phrase
        parts = group_singles(short_steps_as_singles(@dom.items)).map do |item|
          next(item.size == 1 ? "day #{item[0]}" : "days #{join(item.map(&:to_s))}") if item.is_a?(Array)

          case item.kind
          when :range then "days #{item.a} through #{item.b}"
          when :step
            values = item.values
            "every #{ordinal_unit(item.step, "day")} from day #{values.first} through #{values.last}"
          when :last then "the last day"
          when :last_offset
            item.a.zero? ? "the last day" : "the #{ordinal(item.a + 1, words: true)}-to-last day"
          when :nearest then "the weekday nearest day #{item.a}"
          when :last_weekday then "the last weekday"
          end
        end
        "#{join(parts)} of the month"
      end

      def dow_phrase
        monthly = false
        parts = @dow.items.map do |item|
          case item.kind
          when :single then DAYS[item.a % 7]
          when :range then weekday_range(item.a, item.b)
          when :step then join(item.values.map { |v| DAYS[v % 7] }.uniq)
          when :last_dow
            monthly = true
            "the last #{DAYS[item.a]}"
          when :nth_dow
            monthly = true
            "the #{NTH[item.b]} #{DAYS[item.a]}"
          end
        end
        return join(parts) unless monthly
        # "every Monday and the last Wednesday of the month": "every" keeps a
        # plain weekday from reading as "of the month" too.
        plain, monthly_parts = parts.each_with_index.partition { |_, i| @dow.items[i].plain? }
        "#{join(plain.map { |p, _| "every #{p}" } + monthly_parts.map(&:first))} of the month"
      end

      def weekday_range(first, last)
        return "every day of the week" if last - first >= 6
        return "#{DAYS[first % 7]} and #{DAYS[last % 7]}" if last == first + 1

        "#{DAYS[first % 7]} through #{DAYS[last % 7]}"
      end

      # "a Monday", "a Monday, Wednesday or Friday", "the second Sunday of the month"
      def dow_condition
        names = @dow.items.select(&:plain?).flat_map(&:values).map { |v| v % 7 }.uniq.sort.map { |v| DAYS[v] }
        monthly = @dow.items.filter_map do |item|
          case item.kind
          when :last_dow then "the last #{DAYS[item.a]} of the month"
          when :nth_dow then "the #{NTH[item.b]} #{DAYS[item.a]} of the month"
          end
        end
        return "a #{join(names, "or")}" if monthly.empty?

        join((names.empty? ? [] : ["a #{names.join(", ")}"]) + monthly, "or")
      end

      def month_phrase
        return nil if @months.every? || calendar_date?

        parts = @months.items.map do |item|
          case item.kind
          when :single then MONTHS[item.a - 1]
          when :range then "#{MONTHS[item.a - 1]} through #{MONTHS[item.b - 1]}"
          else join(item.values.map { |v| MONTHS[v - 1] })
          end
        end
        "in #{join(parts)}"
      end

      # -- words ----------------------------------------------------------------

      # Steps with few values read better as the values: "days 1, 11, 21 and 31".
      def short_steps_as_singles(items)
        items.flat_map do |item|
          next [item] unless item.kind == :step && item.values.size <= 8

          item.values.map { |v| Item.new(kind: :single, a: v) }
        end
      end

      # Consecutive :single items become one Array of numbers (for "days 1, 15 and 20").
      def group_singles(items)
        items.each_with_object([]) do |item, out|
          if item.kind == :single
            out.last.is_a?(Array) ? out.last << item.a : out << [item.a]
          else
            out << item
          end
        end
      end

      def join(words, conjunction = "and")
        return words[0].to_s if words.size <= 1

        "#{words[0..-2].join(", ")} #{conjunction} #{words[-1]}"
      end

      def plural(count, unit)
        count == 1 ? unit : "#{count} #{unit}s"
      end

      # 2 => "second" (words: true) or "2nd"
      def ordinal(n, words: false)
        return NTH[n] if words && n.between?(1, 10)

        suffix = if (11..13).cover?(n % 100) then "th"
                 else { 1 => "st", 2 => "nd", 3 => "rd" }.fetch(n % 10, "th")
                 end
        "#{n}#{suffix}"
      end
    end
  end
end

# frozen_string_literal: true

require "spec_helper"

RSpec.describe Kaal::Cron, "#explain" do
  {
    # time of day
    "*/15 * * * *" => "Every 15 minutes (UTC)",
    "* * * * *" => "Every minute (UTC)",
    "5 * * * *" => "At minute 5 past every hour (UTC)",
    "0,30 * * * *" => "At minutes 0 and 30 past every hour (UTC)",
    "0-29 * * * *" => "At minutes 0 through 29 past every hour (UTC)",
    "*/7 * * * *" => "Every 7 minutes from minute 0 through 56 of every hour (UTC)",
    "10/5 * * * *" => "Every 5 minutes from minute 10 through 55 of every hour (UTC)",
    "30 2 * * *" => "At 02:30 every day (UTC)",
    "0 9,17 * * *" => "At 09:00 and 17:00 every day (UTC)",
    "15 9,12,18 * * *" => "At 09:15, 12:15 and 18:15 every day (UTC)",
    "0 9-17/2 * * *" => "At 09:00, 11:00, 13:00, 15:00 and 17:00 every day (UTC)",
    "0 */2 * * *" => "Every 2 hours from 00:00 through 22:00 every day (UTC)",
    "0 9-17 * * *" => "Every hour from 09:00 through 17:00 every day (UTC)",
    "*/15 9 * * *" => "Every 15 minutes between 09:00 and 09:59 (UTC)",
    "* 9 * * *" => "Every minute between 09:00 and 09:59 (UTC)",
    "*/15 9,12 * * *" => "Every 15 minutes in hours 9 and 12 (UTC)",
    "*/5 0-5,20-23 * * *" => "Every 5 minutes in hours 0, 1, 2, 3, 4, 5, 20, 21, 22 and 23 (UTC)",
    "0,30 9-17 * * MON-FRI" => "At minutes 0 and 30 between 09:00 and 17:59 on Monday through Friday (UTC)",
    "*/15 9-17 * * 1-5" => "Every 15 minutes between 09:00 and 17:59 on Monday through Friday (UTC)",
    # seconds
    "*/10 * * * * *" => "Every 10 seconds (UTC)",
    "* * * * * *" => "Every second (UTC)",
    "30 * * * * *" => "At second 30 of every minute (UTC)",
    "0-10 * * * * *" => "At seconds 0 through 10 of every minute (UTC)",
    "0-10/5 * * * * *" => "Every 5 seconds from second 0 through 10 of every minute (UTC)",
    "0 0 9 * * *" => "At 09:00 every day (UTC)",
    "15 30 9 * * *" => "At 09:30:15 every day (UTC)",
    "0,30 0 12 * * *" => "At 12:00:00 and 12:00:30 every day (UTC)",
    "30 0 */2 * * *" => "Every 2 hours from 00:00:30 through 22:00:30 every day (UTC)",
    "*/10 5 * * * *" => "Every 10 seconds during minute 5 of every hour (UTC)",
    "10,20 30 * * * *" => "At seconds 10 and 20 during minute 30 of every hour (UTC)",
    "5 * 9 * * *" => "At second 5 of every minute between 09:00 and 09:59 (UTC)",
    "30 */15 9-17 * * 1-5" =>
      "At second 30 during every 15th minute between 09:00 and 17:59 on Monday through Friday (UTC)",
    # day of week
    "0 9 * * 1" => "At 09:00 on Monday (UTC)",
    "0 0 * * 7" => "At 00:00 on Sunday (UTC)",
    "0 0 * * 5-7" => "At 00:00 on Friday through Sunday (UTC)",
    "0 0 * * sat-sun" => "At 00:00 on Saturday and Sunday (UTC)",
    "0 8 * * 6,0" => "At 08:00 on Saturday and Sunday (UTC)",
    "0 0 * * MON-SUN" => "At 00:00 on every day of the week (UTC)",
    "0 9 * * SUN-SUN" => "At 09:00 on Sunday (UTC)",
    "0 0 * * 7/2" => "At 00:00 on Sunday (UTC)",
    "0 0 * * 1-5/2" => "At 00:00 on Monday, Wednesday and Friday (UTC)",
    "0 0 ? * mon" => "At 00:00 on Monday (UTC)",
    "5 4 * * SUN#2" => "At 04:05 on the second Sunday of the month (UTC)",
    "0 0 * * FRI#1,FRI#3" => "At 00:00 on the first Friday and the third Friday of the month (UTC)",
    "0 0 * * 5L" => "At 00:00 on the last Friday of the month (UTC)",
    "15 10 ? * 6L" => "At 10:15 on the last Saturday of the month (UTC)",
    "0 0 * * 1,3L" => "At 00:00 on every Monday and the last Wednesday of the month (UTC)",
    # day of month
    "0 0 1 * *" => "At 00:00 on day 1 of the month (UTC)",
    "0 0 1,15 * *" => "At 00:00 on days 1 and 15 of the month (UTC)",
    "0 0 1-5/2 * *" => "At 00:00 on days 1, 3 and 5 of the month (UTC)",
    "0 0 */2 * *" => "At 00:00 on every other day from day 1 through 31 of the month (UTC)",
    "0 12 */7 * *" => "At 12:00 on days 1, 8, 15, 22 and 29 of the month (UTC)",
    "0 0 L * *" => "At 00:00 on the last day of the month (UTC)",
    "0 0 L-1 * *" => "At 00:00 on the second-to-last day of the month (UTC)",
    "0 0 L-5,L-2 * *" => "At 00:00 on the sixth-to-last day and the third-to-last day of the month (UTC)",
    "0 0 */1 * *" => "At 00:00 on every day from day 1 through 31 of the month (UTC)",
    "0 0 1-10/3,20 * *" => "At 00:00 on days 1, 4, 7, 10 and 20 of the month (UTC)",
    "0 0 * * 7L" => "At 00:00 on the last Sunday of the month (UTC)",
    "0 0 lw * *" => "At 00:00 on the last weekday of the month (UTC)",
    "* * * * MON#1" => "Every minute on the first Monday of the month (UTC)",
    "@hourly Europe/Berlin" => "At minute 0 past every hour (Europe/Berlin)",
    "0 0 L-30 * *" => "At 00:00 on the 31st-to-last day of the month (UTC)",
    "0 0 15W * *" => "At 00:00 on the weekday nearest day 15 of the month (UTC)",
    "0 0 LW * *" => "At 00:00 on the last weekday of the month (UTC)",
    "0 0 1,15,L,20W * *" =>
      "At 00:00 on days 1 and 15, the last day and the weekday nearest day 20 of the month (UTC)",
    # the either-day rule, and the both-day rule when one field starts with *
    "0 0 1-7 * 1" => "At 00:00 on days 1 through 7 of the month or on Monday (UTC)",
    "0 0 L * 5" => "At 00:00 on the last day of the month or on Friday (UTC)",
    "0 0 15 * MON#1" => "At 00:00 on day 15 of the month or on the first Monday of the month (UTC)",
    "0 0 */10 * MON" => "At 00:00 on days 1, 11, 21 and 31 of the month if it is a Monday (UTC)",
    "0 0 */10 * 1-5,5L" => "At 00:00 on days 1, 11, 21 and 31 of the month if it is a Monday, Tuesday, " \
                           "Wednesday, Thursday, Friday or the last Friday of the month (UTC)",
    "0 0 */10 * SUN#2" => "At 00:00 on days 1, 11, 21 and 31 of the month if it is the second Sunday of the month (UTC)",
    "0 0 * * MON#1,FRI" => "At 00:00 on every Friday and the first Monday of the month (UTC)",
    "0-10 0 */6 ? 1 *" => "At seconds 0 through 10 during minute 0 in hours 0, 6, 12 and 18 in January (UTC)",
    "0 0 15 * */2" =>
      "At 00:00 on day 15 of the month if it is a Sunday, Tuesday, Thursday or Saturday (UTC)",
    # months
    "0 0 1 1 *" => "At 00:00 on January 1 (UTC)",
    "0 0 29 2 *" => "At 00:00 on February 29 (UTC)",
    "0 0 * 2 *" => "At 00:00 every day in February (UTC)",
    "0 12 * JAN-MAR *" => "At 12:00 every day in January through March (UTC)",
    "0 12 * */3 *" => "At 12:00 every day in January, April, July and October (UTC)",
    "0 0 1 jan,jul *" => "At 00:00 on day 1 of the month in January and July (UTC)",
    "1 2 3 4 5" => "At 02:01 in April, on day 3 of the month or on Friday (UTC)",
    # macros
    "@daily" => "At 00:00 every day (UTC)",
    "@midnight" => "At 00:00 every day (UTC)",
    "@hourly" => "At minute 0 past every hour (UTC)",
    "@weekly" => "At 00:00 on Sunday (UTC)",
    "@monthly" => "At 00:00 on day 1 of the month (UTC)",
    "@yearly" => "At 00:00 on January 1 (UTC)",
    # zones
    "0 9 * * 1 Europe/Berlin" => "At 09:00 on Monday (Europe/Berlin)",
    "0 0 1 * * Europe/Berlin" => "At 00:00 on day 1 of the month (Europe/Berlin)"
  }.each do |expr, sentence|
    it "explains #{expr.inspect}" do
      expect(described_class.parse(expr).explain).to eq(sentence)
    end
  end

  it "names the time_zone: given" do
    expect(described_class.parse("30 2 * * *", time_zone: "America/New_York").explain)
      .to eq("At 02:30 every day (America/New_York)")
  end

  # The explainer reads the text itself; it must understand every field the
  # way the C parser does (names, 7 = Sunday, ranges ending in SUN, a/s, L-n...).
  it "reads every field the way the C parser does" do
    items = {
      sec: ["", "0 ", "*/7 ", "5,35 ", "0-10 ", "3/20 ", "50-59/3 "],
      min: ["*", "0", "*/15", "5,35", "10-20", "7/20", "0-30/10", "59"],
      hour: ["*", "9", "*/6", "9-17", "8,20", "1-23/11", "?"],
      dom: ["*", "?", "1", "L", "l-2", "15W", "LW", "1-7", "*/10", "1,L,20w", "3/9", "L-0"],
      mon: ["*", "1", "JAN-MAR", "*/6", "2,nov", "dec", "6/2"],
      dow: ["*", "?", "7", "MON-FRI", "sun#2", "5L", "0,6", "*/3", "1,FRI#3", "MON-SUN", "SAT-SUN", "SUN-SUN", "0-SUN", "7/2", "5/1", "6L,7#1",
            "2/2", "thu"]
    }
    rng = Random.new(RSpec.configuration.seed)
    checked = 0
    800.times do
      expr = "#{items[:sec].sample(random: rng)}" +
             %i[min hour dom mon dow].map { |f| items[f].sample(random: rng) }.join(" ")
      next unless described_class.valid?(expr)

      cron = described_class.parse(expr)
      explainer = Kaal::Cron::Explainer.new(cron.expression, cron.time_zone,
                                            seconds: cron.send(:__seconds?), zone_in_text: false)
      expect(explainer.fields).to eq(cron.send(:__fields)), expr
      checked += 1
    end
    expect(checked).to be > 500
  end

  # Every combination of these items parses and gets a sentence that reads
  # as one: capitalised, no gaps or leftovers, ending with the zone.
  it "produces a well-formed sentence for every valid combination of a broad item set" do
    items = {
      sec: ["", "0 ", "*/10 ", "5,35 ", "0-10 ", "3/20 "],
      min: ["*", "0", "*/15", "5,35", "10-20", "7/20", "0-30/10"],
      hour: ["*", "9", "*/6", "9-17", "8,20", "1-23/11"],
      dom: ["*", "?", "1", "L", "L-2", "15W", "LW", "1-7", "*/10", "1,L"],
      mon: ["*", "1", "JAN-MAR", "*/6", "2,11"],
      dow: ["*", "?", "1", "MON-FRI", "SUN#2", "5L", "0,6", "*/3", "1,FRI#3"]
    }
    rng = Random.new(RSpec.configuration.seed)
    checked = 0
    1500.times do
      expr = "#{items[:sec].sample(random: rng)}" +
             %i[min hour dom mon dow].map { |f| items[f].sample(random: rng) }.join(" ")
      next unless described_class.valid?(expr)

      sentence = described_class.parse(expr).explain
      expect(sentence).to match(/\A[A-Z][a-z]/), "#{expr}: #{sentence}"
      expect(sentence).to end_with(" (UTC)"), "#{expr}: #{sentence}"
      expect(sentence).not_to match(/  |\bnil\b| ,|,,| of the month of the month|\?|\*|#/), "#{expr}: #{sentence}"
      checked += 1
    end
    expect(checked).to be > 1000
  end
end

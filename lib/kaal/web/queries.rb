# frozen_string_literal: true

module Kaal
  class Web
    # What the pages show, read through Kaal's API and the backend interface
    # (the same calls `kaal status` makes). Lists come a page at a time.
    class Queries
      Page = Struct.new(:rows, :page, :per_page, :more, keyword_init: true) do
        def first?
          page == 1
        end
      end

      # A page of the dispatch log: rows after the cursor `before` (nil: the
      # newest), more when older rows follow; the next page is
      # before: next_cursor.
      LogPage = Struct.new(:rows, :before, :more, keyword_init: true) do
        def next_cursor
          last = rows.last
          last && [last[:fire_time], last[:key]]
        end
      end

      MAX_PAGE = 1000

      def initialize(per_page: 50)
        @per_page = per_page
      end

      attr_reader :per_page

      # Registered jobs sorted by key (Kaal.jobs: state and where it comes
      # from), one page, each with its next fire times and last run.
      def jobs(page: 1, now: Clock.now)
        all = Kaal.jobs(now: now)
        slice = all[(page - 1) * per_page, per_page] || []
        rows = slice.map do |job|
          cron = Kaal.registry[job[:key]]&.cron
          job.merge(next_fire_times: cron ? cron.next_times(now, count: 3) : [],
                    explanation: cron&.explain, last_run: last_run(job[:key]))
        end
        Page.new(rows: rows, page: page, per_page: per_page, more: all.size > page * per_page)
      end

      def job_count
        Kaal.registry.jobs.size
      end

      def job(key, now: Clock.now)
        Kaal.jobs(now: now).find { |j| j[:key] == key }
      end

      # The last dispatch-log row of a job (scheduled or manual), or nil.
      def last_run(key)
        rows = [*backend.dispatches(key: key, limit: 1), *backend.dispatches(key: ManualRun.log_key(key), limit: 1)]
        rows.max_by { |r| [r[:updated_at].to_i, r[:fire_time]] }
      end

      # The dispatch log of a job, newest first, scheduled and manual runs
      # merged, a keyset page at a time: before is the [fire_time, key] of
      # the last row of the previous page (nil: the newest page).
      def dispatches(key, before: nil)
        want = per_page + 1
        rows = backend.dispatches(key: key, limit: want, before: before) +
               backend.dispatches(key: ManualRun.log_key(key), limit: want, before: before)
        rows.sort! { |a, b| [b[:fire_time], b[:key].b] <=> [a[:fire_time], a[:key].b] }
        log_page(rows, before)
      end

      def nodes(now: Clock.now)
        backend.nodes(since: now.to_i - Kaal.configuration.heartbeat_ttl.ceil).map do |n|
          info = begin
            n[:info] ? JSON.parse(n[:info]) : {}
          rescue JSON::ParserError
            {}
          end
          n.merge(info: info.is_a?(Hash) ? info : {})
        end
      end

      # Pairs claimed longer than a lease ago that no node recorded as run.
      def claimed_not_dispatched(now: Clock.now, limit: 200)
        cutoff = now.to_i - Kaal.configuration.lease_ttl.ceil
        backend.dispatches(status: "claimed", limit: limit).select { |r| r[:claimed_at].to_i < cutoff }
      end

      def failures(before: nil)
        log_page(backend.dispatches(status: "failed", limit: per_page + 1, before: before), before)
      end

      # Pending delayed jobs, soonest first, a keyset page at a time: after
      # is the [run_at_ms, job_id] of the last job of the previous page.
      def delayed(after: nil)
        rows = backend.delayed_list(limit: per_page + 1, after: after)
        LogPage.new(rows: rows.first(per_page), before: after, more: rows.size > per_page)
      end

      def delayed_count
        backend.delayed_count
      end

      # Stored schedules (Kaal.schedules.list: the source "stored", enabled
      # there, paused at runtime, the derived state), by key, a keyset page
      # at a time: after is the key of the last schedule of the previous page.
      def schedules(after: nil, now: Clock.now)
        rows = Kaal.schedules.list(after: after, limit: per_page + 1)
        rows = rows.first(per_page).map do |s|
          cron = begin
            Cron.parse(s[:cron], time_zone: s[:time_zone] || Kaal.configuration.time_zone)
          rescue CronSyntaxError
            nil # a zone this machine lacks: shown without fire times
          end
          s.merge(next_fire_times: cron ? cron.next_times(now, count: 3) : [], explanation: cron&.explain)
        end
        LogPage.new(rows: rows, before: after, more: rows.size == per_page && Kaal.schedules.list(after: rows.last[:key], limit: 1).any?)
      end

      def schedule_count
        Kaal.schedules.count
      end

      private

      def backend
        Kaal.backend
      end

      def log_page(rows, before)
        LogPage.new(rows: rows.first(per_page), before: before, more: rows.size > per_page)
      end
    end
  end
end

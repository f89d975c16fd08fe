# frozen_string_literal: true

module Kaal
  # Brings the stored schedules (Kaal::Schedules) into a node's registry:
  # the scheduler polls it once per tick. A poll is one backend call reading
  # the namespace's change counter; only when it moved are the schedules
  # changed since the last poll read (by version, a page at a time, as
  # columns) and applied: changed and removed keys leave the registry, then
  # the new jobs enter it together (Registry#register_all): those of every
  # row changed before the poll began in one step, then those changed
  # while it ran, page by page. The first poll loads every stored schedule.
  #
  # A node with a million stored schedules: the rows defined alike (cron,
  # zone, class, queue, enabled) are checked once, through +build+, and
  # share that Spec; each plain row (kwargs {}, args without placeholders)
  # becomes a Schedules::StoredJob keeping its args as JSON text until its
  # first run. Any other row is built and checked alone, as before.
  #
  # A stored schedule the registry refuses (a key conflict under
  # scheduler_conflict_policy error) or that this node cannot accept (a
  # class outside its allow-list) is left out; the next change of it is
  # tried again. A poll that applied or refused something emits the
  # `schedules` event (the log lines come from it).
  class ScheduleFeed
    PAGE = 25_000

    attr_reader :version

    # build: row -> Job (raises ConfigurationError); policy: -> the
    # scheduler_conflict_policy; events: the Kaal::Events to emit to; node:
    # -> this node's id.
    def initialize(backend:, registry:, build:, policy:, events: Kaal.events, node: -> { Kaal.node_id })
      @backend = backend
      @registry = registry
      @build = build
      @policy = policy
      @events = events
      @node = node
      @version = 0
      @stored = 0 # stored schedules in the registry (the registry knows which: Registry#stored_job)
    end

    # Applies what changed since the last poll. Returns how many stored
    # schedules it applied (added, changed or removed).
    def poll
      applied = 0
      refused = []
      policy = @policy.call
      version = @version
      first = nil # the change counter as this poll began
      pending = [] # the jobs of the rows changed before that, registered together
      following = nil
      loop do
        page = following ? following.value : changes(version)
        counter, last, keys = page
        first ||= counter
        # a full page: the next one is read (the backend call runs without
        # the GVL) while this one is applied
        following = keys.size == PAGE ? read_ahead(last) : nil
        during = last > first # the page holds changes made during this poll: in their order
        applied += register(pending, policy, refused) if during
        pending = [] if during
        gone, fresh = apply_page(page, policy, refused)
        applied += gone
        during ? applied += register(fresh, policy, refused) : pending.concat(fresh)
        if keys.size == PAGE
          version = last
        else
          version = [counter, last, version].max
          break
        end
      end
      applied += register(pending, policy, refused)
      @version = version
      unless applied.zero? && refused.empty?
        @events.emit(:schedules) do
          { node: @node.call, applied: applied, refused: refused, version: @version, stored: @stored }
        end
      end
      applied
    ensure
      drop(following) if following # a page failed: the page read ahead is not wanted
    end

    # Keys of the stored schedules this node runs.
    def keys
      @registry.stored_jobs.keys
    end

    # Takes every stored schedule it registered out of the registry (the
    # configuration changed); the next poll would start from scratch.
    def detach
      policy = @policy.call
      @registry.stored_jobs.each_key { |key| @registry.unregister(key, policy: policy) }
      @stored = 0
      @version = 0
    end

    private

    def changes(since)
      @backend.schedule_change_columns(since: since, limit: PAGE)
    end

    # A thread reading the page after +since+; this one waits until it
    # started (its backend call then runs without the GVL). nil where no
    # thread can be made or waited for (a trap handler): the next page is
    # then read after this one.
    def read_ahead(since)
      started = Queue.new
      thread = Thread.new do
        started << true
        changes(since)
      end
      thread.report_on_exception = false
      started.pop
      thread
    rescue ThreadError
      drop(thread) if thread
      nil
    end

    def drop(thread)
      thread.kill
      thread.join
    rescue StandardError
      nil # its own failure, if any, is not wanted either
    end

    # One page (Backend#schedule_change_columns): the keys that changed or
    # went leave the registry; returns [how many went for good, the jobs of
    # the page's rows to register].
    def apply_page(page, policy, refused)
      _, _, keys, args, kwargs, defs, def_of = page
      gone = @stored.zero? ? 0 : take_out(keys, def_of, policy)
      specs = defs.map { |definition| shared_spec(keys[definition[5]], definition) }
      # the plain rows' jobs, made natively (a million at start); the rest here
      fresh, rest = Native.stored_jobs(Schedules::StoredJob, keys, args, def_of, specs)
      rest.each do |i|
        d = def_of[i]
        next if d.nil? # removed

        args_json = args[i].is_a?(Integer) ? "[#{args[i]}]" : args[i]
        job = job_of(keys[i], d.negative? ? ~d : d, args_json, kwargs[i] || "{}", defs, refused)
        fresh << job if job
      end
      [gone, fresh]
    end

    # Takes the page's keys that are stored schedules in the registry out of
    # it (they changed or went). Returns how many went for good.
    def take_out(keys, def_of, policy)
      gone = 0
      keys.each_with_index do |key, i|
        next unless @registry.stored_job(key) && @registry.unregister(key, policy: policy)

        @stored -= 1
        gone += 1 if def_of[i].nil?
      end
      gone
    end

    # The Job of a row built and checked alone, or nil (refused, with the reason).
    def job_of(key, d, args_json, kwargs_json, defs, refused)
      @build.call(row(key, defs[d], args_json, kwargs_json))
    rescue ConfigurationError => e
      refused << { key: key, error: e.message }
      nil
    end

    # The Spec every plain row of +definition+ shares, checked through
    # +build+ as the job of +key+ with no args; false when that fails (each
    # row is then built alone and refused with its own key).
    def shared_spec(key, definition)
      @build.call(row(key, definition, "[]", "{}")).spec
    rescue ConfigurationError
      false
    end

    def row(key, definition, args_json, kwargs_json)
      cron, job_class, time_zone, queue, enabled, = definition
      { key: key, cron: cron, job_class: job_class, args_json: args_json, kwargs_json: kwargs_json,
        time_zone: time_zone, queue: queue, enabled: enabled }
    end

    # Registers new jobs; returns how many the registry took.
    def register(fresh, policy, refused)
      return 0 if fresh.empty?

      taken = fresh.size
      @registry.register_all(fresh, policy: policy).each do |job, error|
        refused << { key: job.key, error: error.message }
        taken -= 1
      end
      @stored += taken
      taken
    end
  end
end

# frozen_string_literal: true

require "json"
require "zlib"

module Kaal
  # The tick loop of one node (docs/architecture.md, "The tick").
  #
  # Every tick computes the (job key, fire time) pairs due in the window
  # (cursor .. now + window_lookahead], claims them all in one backend call,
  # and dispatches only what this node won, in fire-time order. Jobs sit in
  # a heap by next fire time, so a tick touches only the due jobs. When the
  # backend fails the tick dispatches nothing (fail closed), the cursor
  # stays, and the loop retries with exponential back-off; the next good
  # tick catches up from max(cursor, now - window_lookback).
  #
  # The first tick (start) also looks back recovery_window for runs missed
  # while no node was running, per job's catch_up: latest (the last missed
  # run only), all (up to max_catch_up_runs) or none; only for a job whose
  # schedule ran before, and only after its latest run (catch_up_after).
  # Claims make sure nothing the dispatch log records runs again.
  class Scheduler
    CLEANUP_EVERY = 60 # seconds between two dispatch-log cleanups
    CLEANUP_RUNS = 10_000 # ... or runs this node won since the last one (#housekeeping)
    CLAIM_SPLIT = 2_000 # due pairs a tick claims in one backend call; more go in chunks (#claim)
    CLAIM_CHUNK = 1_000

    # The runs of one tick in parallel Arrays, without an object per run:
    # the jobs, their keys and the fire times.
    Due = Struct.new(:jobs, :keys, :epochs) do
      def add(job, epoch)
        jobs << job
        keys << job.key
        epochs << epoch
      end

      def empty?
        jobs.empty?
      end
    end

    attr_reader :config, :node, :pool, :cursor, :failures

    def initialize(config:, registry:, backend:, logger:, before_tick: nil, feed: nil)
      @before_tick = before_tick
      @feed = feed # stored schedules (ScheduleFeed), polled once per tick
      @config = config
      @registry = registry
      @backend = backend
      @logger = logger
      @node = config.node_id || NodeId.current
      @pool = WorkerPool.new(config.worker_threads)
      @dispatcher = Dispatcher.new(pool: @pool, allowed_prefixes: config.delayed_job_allowed_class_prefixes,
                                   wrapper: config.job_wrapper, logger: method(:log))
      @events = Kaal.events
      @queue = JobQueue.new
      @generation = nil
      @cursor = nil
      @start_at = nil # the second a start tick that has not succeeded yet was first tried
      @states = {}
      @routes = {} # job key => its atomic hand-off route (Kaal::Handoff)
      @routes_generation = nil # the registry generation #check_handoff! resolved @routes for
      @failures = 0
      @pending_check = nil # the schema check the backend could not answer at start (#start)
      @last_cleanup = nil
      @won_since_cleanup = 0
      @peers = nil # the live node names, sorted (#first_chunk)
      @peers_at = nil
      @tick_lock = Mutex.new
      @want_dispatch = nil # Events#wanted? of this tick's run events (nil before the first tick: emit)
      @want_delayed = nil
      @log_lock = Mutex.new # the outcomes waiting for the dispatch log (#record)
      @log_rows = []
      @log_writing = false
      @stop_lock = Mutex.new
      @wakeup = ConditionVariable.new
      @stopping = false
      @thread = nil
      @started_at = nil
    end

    # -- the loop ------------------------------------------------------------

    # check: run after the checks of the configuration (Kaal.start! checks
    # the backend's schema there), before the loop starts. When it returns
    # a callable (the backend could not answer), each tick calls that first
    # and fails closed on its BackendError until it passes.
    def start(check: nil)
      check_handoff!
      deferred = check&.call
      @pending_check = deferred.respond_to?(:call) ? deferred : nil
      @stop_lock.synchronize do
        return self if @thread&.alive?

        @stopping = false
        @started_at = Time.now.utc
        @node = @config.node_id || NodeId.current # a new name after fork
        @thread = Thread.new { run_loop }
        @thread.name = "kaal-scheduler"
        @thread.report_on_exception = true
      end
      @events.emit(:scheduler_start) do
        { node: @node, backend: @config.backend, namespace: @config.namespace, jobs: @registry.size,
          tick_interval: @config.tick_interval, pid: Process.pid }
      end
      self
    end

    def running?
      !@thread.nil? && @thread.alive?
    end

    # Finishes the current tick, stops the loop and waits for running jobs
    # up to +timeout+ seconds. Returns true when everything finished.
    def stop(timeout: @config.shutdown_timeout)
      deadline = Clock.monotonic + timeout
      thread = @stop_lock.synchronize do
        @stopping = true
        @wakeup.broadcast
        @thread
      end
      @events.emit(:scheduler_stopping) { { node: @node, timeout: timeout } } if thread
      thread&.join unless thread == Thread.current
      finished = @pool.shutdown([deadline - Clock.monotonic, 0].max)
      @events.emit(:scheduler_stop) { { node: @node, finished: finished, timeout: timeout, was_running: !thread.nil? } }
      @stop_lock.synchronize { @thread = nil }
      finished
    end

    # Runs one tick at +now+ (Float/Integer Unix seconds or a Time).
    # Returns the Dispatches it started; with +wait+, waits for the worker
    # pool first so their status is final.
    def tick(now = Clock.now, wait: false)
      dispatches = @tick_lock.synchronize { tick_locked(now_seconds(now)) }
      @pool.wait_idle(@config.shutdown_timeout) if wait && dispatches.any? { |d| d.status == "pending" }
      dispatches
    end

    # The job's next fire time as this scheduler sees it (nil if unknown).
    def next_fire_epoch(job)
      job.next_epoch || job.cron.next_epoch(now_seconds(Clock.now).floor)
    end

    # The job's source enables it and Kaal.disable has not paused it (a
    # stored false is a pause; a stored true lifts it).
    def enabled?(job)
      job.enabled && @states[job.key] != false
    end

    # "atomic" when the runs of the job +key+ are claimed and enqueued in one
    # step (Kaal::Handoff), else "at_most_once"; as of the last tick or start.
    def handoff_of(key)
      @routes.key?(key) ? "atomic" : "at_most_once"
    end

    # States refreshed from the backend (key => enabled).
    def refresh_states
      @states = @backend.states
    end

    private

    def run_loop
      interval = @config.tick_interval.to_f
      next_at = nil
      until @stop_lock.synchronize { @stopping }
        ok = begin
          @before_tick&.call
          tick
          @failures.zero?
        rescue StandardError => e
          log(:error, "tick failed: #{e.class}: #{e.message}")
          false
        end
        now = Clock.now
        next_at = if ok
                    [((now / interval).floor + 1) * interval, next_due_at].compact.min
                  else
                    now + backoff
                  end
        sleep_until(next_at)
      end
    end

    # When the next recurring run is due before the next aligned tick (a
    # job every second with tick_interval 5), the loop wakes for it, so runs
    # are not late by up to a tick_interval.
    def next_due_at
      epoch = @tick_lock.synchronize { @queue.next_epoch }
      epoch && (epoch - @config.window_lookahead.floor)
    end

    public

    # The epoch of the next run the scheduler has placed for the job +key+
    # (nil: not placed yet, or no such job). Looks through every queued
    # job: for tests and diagnostics, not for a loop.
    def next_run_epoch(key)
      @tick_lock.synchronize do
        @queue.each_with_epoch { |job, epoch| return epoch if job.key == key }
        nil
      end
    end

    private

    def backoff
      [@config.tick_interval.to_f * (2**[@failures - 1, 10].min), @config.max_backoff.to_f].min
    end

    def sleep_until(at)
      @stop_lock.synchronize do
        loop do
          break if @stopping

          left = at - Clock.now
          break if left <= 0

          @wakeup.wait(@stop_lock, left + 0.002)
        end
      end
    end

    # -- one tick ------------------------------------------------------------

    def now_seconds(now)
      case now
      when Integer, Float then now
      when Time then now.to_r.to_f
      when Rational then now.to_f
      else
        unless now.respond_to?(:to_time) && !now.is_a?(String)
          raise ArgumentError, "now: must be a Time or Unix seconds, got #{now.class}"
        end

        now.to_time.to_r.to_f
      end
    end

    def tick_locked(now_f)
      started = Clock.monotonic
      @want_dispatch = @events.wanted?(:dispatch) # subscribers and log level, read once per tick (#emit_dispatch)
      @want_delayed = @events.wanted?(:delayed_dispatch)
      now_i = now_f.floor
      hi = now_i + @config.window_lookahead.floor
      @start_at ||= now_i if @cursor.nil?
      popped = [] # [previous epoch (nil: first placement), jobs, their next epochs (nil: @placement)], ...
      operation = "states" # the backend call in progress, for backend_error
      begin
        if @pending_check
          operation = "schema_check"
          @pending_check.call
          @pending_check = nil
          operation = "states"
        end
        refresh_states
        operation = "schedule_changes"
        @feed&.poll
        sync_jobs
        operation = "dispatches"
        due = collect(now_i, hi, popped)
        operation = "claim"
        due, handed = hand_off(due, now_i) unless due.empty? || @routes.empty?
        won = due.empty? ? [] : claim(due, now_i)
      rescue BackendError => e
        restore(popped)
        @failures += 1
        retry_in = Thread.current.equal?(@thread) ? backoff : nil
        backend_error(operation, e, fail_closed: true, failures: @failures, retry_in: retry_in)
        @events.emit(:tick) do
          { node: @node, at: Time.at(now_i).utc, ok: false, duration: Clock.monotonic - started, due: 0, claimed: 0,
            won: 0, delayed: 0 }
        end
        return []
      rescue StandardError
        restore(popped) # whatever failed, the popped jobs stay scheduled
        raise
      end
      commit(popped)
      @cursor = hi
      @start_at = nil
      if @failures.positive?
        log(:info, "backend #{@config.backend} is back after #{@failures} failed attempts")
        @failures = 0
      end

      dispatches = nil
      # Workers start on the batch's end, after the tick's own backend calls,
      # so they do not compete with the tick for the GVL.
      won_count = 0
      @pool.batch do
        dispatches = dispatch_claimed(due, won)
        if handed
          handed.each { |d| emit_dispatch(d) }
          dispatches = handed.concat(dispatches)
        end
        won_count = dispatches.size
        @won_since_cleanup += won_count
        dispatches.concat(sweep_delayed(now_f))
        housekeeping(now_i)
      end
      @events.emit(:tick) do
        { node: @node, at: Time.at(now_i).utc, ok: true, duration: Clock.monotonic - started, due: due.keys.size,
          claimed: due.keys.size, won: won_count, delayed: dispatches.size - won_count }
      end
      dispatches
    end

    # Claims the due pairs: one backend call, or for a big tick (more than
    # CLAIM_SPLIT pairs) one call per CLAIM_CHUNK pairs, starting at a chunk
    # that depends on the node's place among the live nodes (#first_chunk).
    # One call per tick is atomic on Redis, so the first node's call would
    # win every pair and that node would run a busy second alone; in chunks,
    # nodes start apart and share the runs. A chunk that fails after others
    # were won: the won runs are dispatched (nothing claimed is claimed
    # again), then the tick fails closed.
    def claim(due, now_i)
      keys = due.keys
      epochs = due.epochs
      lease = (@config.lease_ttl * 1000).to_i
      return @backend.claim_columns(keys, epochs, lease_ms: lease, node: @node, now: now_i) if keys.size <= CLAIM_SPLIT

      won = Array.new(keys.size, false)
      chunks = (keys.size + CLAIM_CHUNK - 1) / CLAIM_CHUNK
      first = first_chunk(chunks, now_i)
      chunks.times do |i|
        from = ((first + i) % chunks) * CLAIM_CHUNK
        part = @backend.claim_columns(keys[from, CLAIM_CHUNK], epochs[from, CLAIM_CHUNK], lease_ms: lease, node: @node,
                                                                                           now: now_i)
        won[from, part.size] = part
      rescue BackendError
        raise if i.zero?

        @pool.batch { dispatch_claimed(due, won) }
        raise
      end
      won
    end

    PEERS_EVERY = 10 # seconds between two reads of the live nodes (#first_chunk)

    # The chunk a big tick claims first: the live nodes (heartbeats, read
    # every PEERS_EVERY seconds) sorted by name, this node's place among
    # them spread over the chunks, so five nodes start five chunks apart
    # and each wins about a fifth of a busy second. Without the list (the
    # read failed) a hash of the node id picks the start.
    def first_chunk(chunks, now_i)
      if @peers.nil? || now_i - @peers_at >= PEERS_EVERY || now_i < @peers_at
        @peers_at = now_i
        @peers = begin
          (@backend.nodes(since: now_i - @config.heartbeat_ttl.ceil).map { |n| n[:node] } | [@node]).sort
        rescue BackendError
          []
        end
      end
      rank = @peers.index(@node)
      return Zlib.crc32(@node) % chunks unless rank

      rank * chunks / @peers.size
    end

    # The runs of jobs with an atomic hand-off are claimed and enqueued in one
    # step by their route (Kaal::Handoff), one call per route; the rest is
    # claimed as usual. Returns [the rest (Due), the handed-off Dispatches,
    # status final]. A BackendError leaves the runs not yet handed off
    # unclaimed, and the tick fails closed.
    def hand_off(due, now_i)
      groups = {}
      rest = Due.new([], [], [])
      namespace = @config.namespace
      due.jobs.each_with_index do |job, i|
        route = @routes[job.key]
        if route
          (groups[route] ||= []) << Dispatch.recurring(job, due.epochs[i], namespace, @node)
        else
          rest.add(job, due.epochs[i])
        end
      end
      return [due, nil] if groups.empty?

      lease_ms = (@config.lease_ttl * 1000).to_i
      handed = []
      groups.each do |route, runs|
        handed.concat(route.hand_off(runs, lease_ms: lease_ms, node: @node, now: now_i, wrapper: @config.job_wrapper))
      end
      [rest, handed]
    end

    # Resolves every registered job's hand-off now (Kaal.start!): a job that
    # asks for handoff: atomic on a target that cannot do it raises
    # ConfigurationError before the loop starts.
    def check_handoff!
      @tick_lock.synchronize do
        @routes_generation = @registry.generation # the first tick keeps these routes unless the jobs change
        @routes = resolve_routes(@registry.jobs.values)
      end
    end

    # job key => route, for the jobs whose runs are handed off atomically.
    # Routes are resolved once per target, so the jobs of one class share
    # one route and one claim call per tick.
    def resolve_routes(jobs)
      return {} if @config.handoff == :at_most_once && jobs.none?(&:handoff)

      by_target = Hash.new { |h, handoff| h[handoff] = {} } # handoff => target => route (nil: none)
      by_base = {}.compare_by_identity # the Spec jobs per customer differ from => its route
      routes = {}
      spec = base = route = nil
      jobs.each do |job|
        unless job.spec.equal?(spec) # alike jobs come in runs: one check per run
          spec = job.spec
          if Job::ArgsSpec === spec # jobs per customer, in any order: one lookup
            unless spec.base.equal?(base)
              base = spec.base
              route = by_base.fetch(base) { by_base[base] = route_of(base, job, by_target) }
            end
          else
            base = nil
            route = route_of(spec, job, by_target)
          end
        end
        routes[job.key] = route if route
      end
      routes
    end

    # The route of the jobs of +spec+ (+job+ one of them), resolved once per
    # target and hand-off (by_target).
    def route_of(spec, job, by_target)
      handoff = spec.handoff
      return nil if handoff == :at_most_once

      target = spec.callable || spec.job_class
      known = by_target[handoff]
      known.key?(target) ? known[target] : known[target] = Handoff.resolve(job, @dispatcher.plan(target),
                                                                           config: @config, backend: @backend)
    end

    # Rebuilds the heap when the registered jobs changed (keeps the next
    # fire time of jobs that stayed; new jobs start after the cursor).
    def sync_jobs
      generation = @registry.generation
      return if generation == @generation

      jobs = @registry.jobs
      all = jobs.values # one copy of a million-entry table, not two
      if @cursor.nil?
        @queue.clear
        @pending_start = all # the first tick places every job (#start_jobs)
      else
        kept = {}.compare_by_identity # job => its next epoch, for the jobs that stay
        @queue.each_with_epoch { |job, epoch| kept[job] = epoch }
        @queue.clear
        all.each { |job| @queue.push(job, kept[job] || job.cron.next_epoch(@cursor)) }
        @pending_start = nil
      end
      @routes = resolve_routes(all) unless @routes_generation == generation
      @routes_generation = nil
      @generation = generation
    end

    # The due runs (Due), in fire-time order with ties in key order. Adds
    # the popped jobs to popped with their previous epoch (to put back if
    # the tick fails) and their next ones (#commit).
    # if the tick fails.
    def collect(now_i, hi, popped)
      due = Due.new([], [], [])
      start_jobs(now_i, hi, due, popped) if @pending_start&.any?

      lo = @cursor || (now_i - @config.tick_interval.ceil)
      lo = [lo, now_i - @config.window_lookback.ceil].max
      return sorted(due) if hi <= lo

      cap = @config.max_catch_up_runs
      states = @states
      out_jobs = due.jobs
      out_keys = due.keys
      out_epochs = due.epochs
      # Buckets come in fire-time order with their jobs in key order: while
      # every job gives one run at its bucket's time, the runs are in order.
      ordered = out_jobs.empty?
      @queue.pop_due(hi) do |previous, jobs|
        nexts = []
        popped << previous << jobs << nexts
        jobs.each do |job|
          cron = job.cron
          epoch = previous > lo ? previous : cron.next_epoch(lo)
          ordered = false unless epoch == previous
          on = job.enabled && (states.empty? || states[job.key] != false)
          first = out_epochs.size
          while epoch <= hi
            if on # Due#add, inlined: this loop runs once per due job
              out_jobs << job
              out_keys << job.key
              out_epochs << epoch
            end
            epoch = cron.next_epoch(epoch)
          end
          nexts << epoch
          runs = out_epochs.size - first
          next if runs < 2

          ordered = false
          next if runs <= cap

          [out_jobs, out_keys, out_epochs].each { |a| a.slice!(first, runs - cap) } # keep the latest runs
        end
      end
      ordered ? due : sorted(due)
    end

    # First placement of jobs (the start tick, or jobs added before any
    # tick): the runs due now plus missed runs per catch_up policy.
    def start_jobs(now_i, hi, due, popped)
      # A start tick that failed (backend down) keeps its lower bound, so the
      # runs due while the backend was away are caught up within
      # window_lookback when it returns, as for a node that was running.
      start_at = @start_at || now_i
      interval = @config.tick_interval.ceil
      regular_lo = [[start_at - interval, now_i - @config.window_lookback.ceil].max, now_i - interval].min
      floor = now_i - @config.recovery_window.floor
      recover = @config.enable_dispatch_recovery && regular_lo > floor
      pending = @pending_start
      @pending_start = nil
      popped << nil << pending << nil # restore puts them all back if anything fails
      placed = [] # job, its runs from the start window, its missed runs; for each job with any
      plan = start_plan(regular_lo, hi, start_at, recover ? floor : nil)
      by_base = {}.compare_by_identity # the Spec jobs per customer differ from => its plan
      groups = @placement = {} # next epoch => the jobs placed there (#commit)
      states = @states
      spec = list = epoch = fires = missed = nil
      runs_now = false # the jobs of spec have runs to claim now (when not paused)
      pending.each do |job|
        # Jobs defined alike share one Spec and come in runs (a scheduler
        # file, a loop of Kaal.register): what depends on the definition
        # only is worked out once per run, so a million jobs cost a pass.
        # Jobs per customer (a Job::ArgsSpec each) share the plan of the
        # Spec they differ from in their args, in whatever order they come.
        unless job.spec.equal?(spec)
          spec = job.spec
          entry = Job::ArgsSpec === spec ? (by_base[spec.base] ||= plan.call(spec.base)) : plan.call(spec)
          list = (groups[entry[0]] ||= []) unless entry[0] == epoch
          epoch, fires, missed, runs_now = entry
        end
        list << job
        placed << job << fires << missed if runs_now && (states.empty? || states[job.key] != false)
      end
      lasts = last_fires(placed)
      i = 0
      while i < placed.size
        job = placed[i]
        fires = placed[i + 1]
        last = lasts && lasts[i / 3]
        missed = catch_up_after(job, placed[i + 2], last)
        missed.each { |f| due.add(job, f) }
        unless missed.empty?
          @events.emit(:catch_up) do
            { key: job.key, node: @node, policy: (job.catch_up || @config.catch_up).to_s, runs: missed.size,
              fire_times: missed.map { |f| job.fire_time(f) } }
          end
        end
        fires = fires.select { |f| f > last } if last # never a run before one already dispatched
        fires.last(@config.max_catch_up_runs).each { |f| due.add(job, f) }
        i += 3
      end
    end

    # definition (a Spec) -> [next epoch after hi, its runs in (regular_lo,
    # hi] as the start takes them, its missed runs (floor: the recovery
    # window's lower bound, nil: no recovery), whether it has any run to
    # claim]. Definitions with one Cron, catch-up and enabled share the
    # result: their runs are computed once.
    def start_plan(regular_lo, hi, start_at, floor)
      by_cron = {}.compare_by_identity # cron => [[policy, enabled, plan], ...]
      missed_by = Hash.new { |h, policy| h[policy] = {}.compare_by_identity } # policy => cron => runs
      none = [].freeze
      default_policy = @config.catch_up
      lambda do |spec|
        cron = spec.cron
        policy = spec.catch_up || default_policy
        enabled = spec.enabled
        known = (by_cron[cron] ||= []).find { |p, e, _| p == policy && e == enabled }
        next known[2] if known

        epoch, fires = start_runs(cron, regular_lo, hi)
        fires = start_slack(policy, fires, start_at)
        missed = floor ? (missed_by[policy][cron] ||= missed_runs(policy, cron, regular_lo, floor).freeze) : none
        plan = [epoch, fires, missed, enabled && !(fires.empty? && missed.empty?)].freeze
        by_cron[cron] << [policy, enabled, plan]
        plan
      end
    end

    # The latest fire time the dispatch log has for each placed job's key
    # (claimed, dispatched or failed, by any node; nil when none), read in
    # batches (Backend#latest_fires), or nil when the namespace's log is
    # empty (a first deploy: one cheap query instead of reading every key).
    def last_fires(placed)
      return nil if placed.empty? || @backend.dispatches(limit: 1).empty?

      keys = []
      placed.each_slice(3) { |job, _, _| keys << job.key }
      @backend.latest_fires(keys)
    end

    # Catch-up is for schedules that ran before, and the dispatch log says
    # which (README, "Missed runs"): a key with no run in the log is new and
    # catches up nothing; a key whose latest run is not a fire time of its
    # cron has a new schedule and catches up nothing; otherwise only the
    # missed runs after that latest run.
    def catch_up_after(job, missed, last)
      return [] if missed.empty? || last.nil?
      return [] unless job.cron.next_epoch(last - 1) == last

      missed.select { |f| f > last }
    end

    # The start window reaches tick_interval before the first tick, for a
    # run the tick would otherwise miss (`kaal tick` started a little late
    # by an external cron). It gives a job at most its latest run before
    # start_at, and none when the job has runs from start_at on, so a job
    # firing every second does not fire a burst at start; catch_up: all
    # keeps them all.
    def start_slack(policy, fires, start_at)
      return fires if fires.empty? || fires.first >= start_at || policy == :all

      from_start = fires.select { |f| f >= start_at }
      from_start.empty? ? fires.last(1) : from_start
    end

    # The runs of cron in (lo, hi] and the first one after hi.
    def start_runs(cron, lo, hi)
      epoch = cron.next_epoch(lo)
      fires = []
      while epoch <= hi
        fires << epoch
        epoch = cron.next_epoch(epoch)
      end
      [epoch, fires.freeze]
    end

    def missed_runs(policy, cron, before, floor)
      case policy
      when :none then []
      when :latest
        epoch = cron.previous_epoch(before + 1)
        epoch > floor ? [epoch] : []
      else
        runs = []
        epoch = before + 1
        while runs.size < @config.max_catch_up_runs
          epoch = cron.previous_epoch(epoch)
          break if epoch <= floor

          runs << epoch
        end
        runs.reverse
      end
    rescue RangeError, ArgumentError
      []
    end

    # due in fire-time order, ties in key order. The runs are grouped by
    # fire time (a tick has few distinct ones) and a group is sorted by key
    # only when it is not in key order already: a node that fell behind
    # gets several runs per job in one tick, and sorting 20,000 runs by
    # [time, key] pairs took most of its CPU.
    def sorted(due)
      epochs = due.epochs
      keys = due.keys
      return due if epochs.size < 2

      groups = {}
      epochs.each_with_index { |epoch, i| (groups[epoch] ||= []) << i }
      order = []
      groups.keys.sort!.each do |epoch|
        group = groups[epoch]
        group = group.sort_by { |i| keys[i] } unless in_key_order?(keys, group)
        order.concat(group)
      end
      Due.new(order.map { |i| due.jobs[i] }, order.map { |i| keys[i] }, order.map { |i| epochs[i] })
    end

    def in_key_order?(keys, group)
      i = 1
      n = group.size
      while i < n
        return false if keys[group[i - 1]] > keys[group[i]]

        i += 1
      end
      true
    end

    # popped: [previous epoch, jobs, their next epochs], ...; the jobs go
    # back at their next epochs.
    def commit(popped)
      i = 0
      while i < popped.size
        if popped[i].nil? # placed by #start_jobs: the jobs by their next epoch
          @queue.push_placed(@placement)
          @placement = nil
        else
          @queue.push_all(popped[i + 1], popped[i + 2])
        end
        i += 3
      end
    end

    # The popped jobs go back where they were: at their previous epoch, or
    # to be placed by the next start tick.
    def restore(popped)
      popped.each_slice(3) do |previous, jobs, _|
        if previous.nil?
          (@pending_start ||= []).concat(jobs)
        else
          @queue.push_at(previous, jobs)
        end
      end
    end

    # -- dispatch ------------------------------------------------------------

    # Dispatches the claimed pairs; class names are resolved once per tick.
    def dispatch_claimed(due, won)
      plans = {}
      done = @recurring_done ||= method(:recurring_done)
      namespace = @config.namespace
      node = @node
      dispatcher = @dispatcher
      jobs = due.jobs
      epochs = due.epochs
      out = []
      i = 0
      n = jobs.size
      while i < n
        if won[i]
          job = jobs[i]
          d = Dispatch.recurring(job, epochs[i], namespace, node)
          target = job.callable || job.job_class
          out << dispatcher.execute(d, plans[target] ||= dispatcher.plan(target), done)
        end
        i += 1
      end
      out
    end

    def recurring_done(dispatch)
      record(dispatch, dispatch.fire_epoch)
      emit_dispatch(dispatch)
    end

    # The outcome goes to the dispatch log. A worker that finds no write in
    # progress writes every outcome waiting, in one backend call
    # (Backend#record_many), until none is left; others only add theirs. So
    # thousands of runs a second cost a few round trips, and an idle worker
    # pool means every outcome is written.
    def record(dispatch, epoch)
      return unless @config.enable_log_dispatch_registry

      row = [dispatch.key, epoch, dispatch.status, dispatch.error]
      @log_lock.synchronize do
        @log_rows << row
        return if @log_writing

        @log_writing = true
      end
      write_log_rows
    end

    def write_log_rows
      finished = false
      loop do
        rows = @log_lock.synchronize do
          taken = @log_rows
          if taken.empty?
            @log_writing = false
            finished = true
            return
          end
          @log_rows = []
          taken
        end
        begin
          @backend.record_many(rows, node: @node, now: Clock.now.floor)
        rescue StandardError => e
          rows.each { |key, epoch, status, _| backend_error("record", e, key: key, fire_epoch: epoch, status: status) }
        end
      end
    ensure
      @log_lock.synchronize { @log_writing = false } unless finished # killed mid-write: the next run writes
    end

    # The dispatch (recurring) or delayed_dispatch event of a finished run,
    # and dispatch_failed when it failed. The log line is their subscriber.
    # A successful run's payload is built only when a subscriber wants it
    # (Events#wanted?, asked once per tick: not for a log line below the log
    # level), so at thousands of runs a second with log_dispatches: summary
    # a run costs no event at all.
    def emit_dispatch(d)
      recurring = d.recurring?
      name = recurring ? :dispatch : :delayed_dispatch
      failed = d.status == "failed"
      return unless failed || (recurring ? @want_dispatch : @want_delayed) != false

      payload = nil
      @events.emit(name) { payload ||= dispatch_payload(d, name) }
      @events.emit(:dispatch_failed) { payload ||= dispatch_payload(d, name) } if failed
    end

    def dispatch_payload(d, kind)
      fire_time = d.fire_time
      lateness = fire_time && (Clock.now - d.duration.to_f - (d.fire_epoch || fire_time.to_r.to_f))
      { kind: kind.to_s, key: d.key, fire_time: fire_time, idempotency_key: d.idempotency_key, job_id: d.job_id,
        job_class: d.job_class, queue: d.queue, node: @node, status: d.status, duration: d.duration,
        lateness: lateness, error: d.error, exception: d.exception }
    end

    def backend_error(operation, error, **fields)
      @events.emit(:backend_error) do
        { operation: operation, backend: @config.backend, node: @node, error: Kaal.redact_text(error.message.to_s),
          error_class: error.class.name, exception: error, **fields }
      end
    end

    # -- delayed jobs ----------------------------------------------------------

    def sweep_delayed(now_f)
      now_ms = (now_f * 1000).floor
      limit = @config.delayed_batch_size
      out = []
      loop do
        batch = @backend.delayed_claim(now_ms: now_ms, limit: limit)
        batch.each { |row| out << dispatch_delayed(row) }
        break if batch.size < limit
      end
      out
    rescue BackendError => e
      backend_error("delayed_claim", e)
      out
    end

    def dispatch_delayed(row)
      if row[:job_class].nil?
        # Taken from the store but its payload could not be decoded (the
        # Redis backend keeps the raw payload in {<ns>}:delayed-unreadable).
        raise BackendError, "the stored payload of delayed job #{row[:job_id].inspect} could not be decoded; " \
                            "it was taken off the pending jobs and kept aside (docs/redis.md)"
      end

      args = JSON.parse(row[:args_json])
      d = Dispatch.new(job_id: row[:job_id], job_class: row[:job_class], queue: row[:queue], node: @node,
                       fire_time: Time.at(Rational(row[:run_at_ms], 1000)).utc, arguments: [args, {}])
      raise ArgumentError, "stored args are not a JSON array" unless args.is_a?(Array)

      @dispatcher.call(d, row[:job_class], @delayed_done ||= method(:emit_dispatch))
    rescue StandardError, ScriptError => e
      d ||= Dispatch.new(job_id: row[:job_id], job_class: row[:job_class], queue: row[:queue], node: @node)
      d.status = "failed"
      d.error = Dispatcher.describe_error(e)
      d.exception = e
      emit_dispatch(d)
      d
    end

    # -- heartbeat and cleanup ------------------------------------------------

    def housekeeping(now_i)
      operation = "heartbeat"
      info = JSON.generate(pid: Process.pid, version: VERSION, jobs: @registry.size,
                           started_at: @started_at&.iso8601, tick_interval: @config.tick_interval)
      @backend.heartbeat(@node, info, now: now_i, ttl: @config.heartbeat_ttl.ceil)
      # Once a minute, and after every CLEANUP_RUNS runs won: on Redis a
      # cleanup first indexes the claims made since the last one, and at
      # 10,000 runs a second a minute's worth (600,000) kept Redis busy for
      # seconds, every node waiting.
      return if @last_cleanup && now_i - @last_cleanup < CLEANUP_EVERY && @won_since_cleanup < CLEANUP_RUNS

      @last_cleanup = now_i
      @won_since_cleanup = 0
      operation = "cleanup"
      @backend.cleanup(before: now_i - @config.dispatch_log_retention.ceil, limit: @config.cleanup_batch_size)
    rescue BackendError => e
      backend_error(operation, e)
    end

    def log(level, message)
      @logger.call(level, message)
    end
  end
end

# frozen_string_literal: true

module Kaal
  # A fixed number of threads running plain Ruby jobs, so a slow job never
  # delays the tick. Threads start on first use. #shutdown waits for the
  # queued and running work up to a timeout.
  class WorkerPool
    attr_reader :size

    def initialize(size)
      @size = size
      @queue = Queue.new
      @threads = []
      @lock = Mutex.new
      @idle = ConditionVariable.new
      @pending = 0
    end

    # Runs +work+ (anything responding to #call, or the block) on a pool
    # thread. Returns false when the pool is shut down. Inside #batch the
    # work is held back until the batch ends.
    def post(work = nil, &block)
      block = work || block
      held = Thread.current[:kaal_pool_batch]
      if held && held[0].equal?(self) && !@queue.closed?
        held[1] << block
        return true
      end
      @lock.synchronize do
        return false if @queue.closed?

        @pending += 1
        spawn_threads
      end
      @queue << block
      true
    end

    # Holds back the work posted by this thread during the block and hands
    # it to the workers at the end, so they do not compete with the caller
    # for the GVL while it is still dispatching (the tick).
    def batch
      outer = Thread.current[:kaal_pool_batch]
      return yield if outer

      held = [self, []]
      Thread.current[:kaal_pool_batch] = held
      begin
        yield
      ensure
        Thread.current[:kaal_pool_batch] = nil
        release(held[1])
      end
    end

    # Jobs queued or running.
    def pending
      @lock.synchronize { @pending }
    end

    # Waits until nothing is queued or running, up to +timeout+ seconds
    # (nil: forever). Returns true when idle.
    def wait_idle(timeout = nil)
      deadline = timeout && (Clock.monotonic + timeout)
      @lock.synchronize do
        while @pending.positive?
          left = deadline && (deadline - Clock.monotonic)
          return false if left && left <= 0

          @idle.wait(@lock, left)
        end
      end
      true
    end

    # Stops taking work, waits up to +timeout+ for queued and running jobs,
    # then kills the threads still busy. Returns true when all work finished.
    def shutdown(timeout)
      @queue.close
      finished = wait_idle(timeout)
      threads = @lock.synchronize { @threads.dup }
      threads.each { |t| t.join(finished ? 1 : 0.01) || t.kill }
      finished
    end

    def running?
      !@queue.closed?
    end

    private

    # Hands held work to the workers (runs it here if the pool closed).
    def release(blocks)
      return if blocks.empty?

      closed = @lock.synchronize do
        next true if @queue.closed?

        @pending += blocks.size
        spawn_threads
        false
      end
      return blocks.each(&:call) if closed

      blocks.each { |b| @queue << b }
    end

    def spawn_threads
      @threads.select!(&:alive?)
      return if @threads.size >= @size || @threads.size >= @pending

      thread = Thread.new { work }
      thread.name = "kaal-worker-#{@threads.size + 1}"
      thread.report_on_exception = false
      @threads << thread
    end

    def work
      while (job = @queue.pop)
        begin
          job.call
        rescue Exception # rubocop:disable Lint/RescueException -- the job reports its own errors; keep the thread
          nil
        ensure
          @lock.synchronize do
            @pending -= 1
            @idle.broadcast if @pending.zero?
          end
        end
      end
    end
  end
end

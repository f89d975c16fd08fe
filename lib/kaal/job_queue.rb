# frozen_string_literal: true

module Kaal
  # The jobs by next fire time (Job#next_epoch, Integer Unix seconds): a
  # bucket of jobs per epoch plus a binary min-heap of the distinct epochs.
  # Jobs often share fire times (every hour at :00), so taking the due jobs
  # costs O(due + distinct due epochs · log e) and a tick with nothing due
  # only looks at the heap's top.
  class JobQueue
    attr_reader :size

    def initialize
      @buckets = {}
      @epochs = []
      @size = 0
    end

    def empty?
      @size.zero?
    end

    def clear
      @buckets.clear
      @epochs.clear
      @size = 0
    end

    def each(&block)
      @buckets.each_value { |jobs| jobs.each(&block) }
    end

    # The earliest next fire epoch (nil when empty).
    def next_epoch
      @epochs[0]
    end

    def push(job)
      epoch = job.next_epoch
      if (bucket = @buckets[epoch])
        bucket << job
      else
        @buckets[epoch] = [job]
        heap_push(epoch)
      end
      @size += 1
      self
    end

    # Removes the jobs whose next epoch is <= +hi+ and yields (epoch, jobs)
    # per epoch, earliest first, the jobs in key order. (Jobs pushed back in
    # that order keep a bucket sorted, so a steady schedule sorts only once.)
    def pop_due(hi)
      while (epoch = @epochs[0]) && epoch <= hi
        heap_pop
        jobs = @buckets.delete(epoch)
        @size -= jobs.size
        jobs.sort_by!(&:key) unless keys_sorted?(jobs)
        yield epoch, jobs
      end
    end

    private

    def keys_sorted?(jobs)
      i = 1
      while i < jobs.size
        return false if (jobs[i].key <=> jobs[i - 1].key).negative?

        i += 1
      end
      true
    end

    def heap_push(epoch)
      heap = @epochs
      heap << epoch
      i = heap.size - 1
      while i.positive?
        parent = (i - 1) >> 1
        break if heap[parent] <= epoch

        heap[i] = heap[parent]
        i = parent
      end
      heap[i] = epoch
    end

    def heap_pop
      heap = @epochs
      last = heap.pop
      return if heap.empty?

      size = heap.size
      i = 0
      loop do
        child = (2 * i) + 1
        break if child >= size

        right = child + 1
        child = right if right < size && heap[right] < heap[child]
        break if heap[child] >= last

        heap[i] = heap[child]
        i = child
      end
      heap[i] = last
    end
  end
end

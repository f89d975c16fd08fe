# frozen_string_literal: true

module Kaal
  # A binary min-heap of jobs ordered by Job#next_epoch (Integer Unix
  # seconds), so a tick only touches the jobs that are due: O(due · log n).
  class JobQueue
    def initialize
      @heap = []
    end

    def size
      @heap.size
    end

    def empty?
      @heap.empty?
    end

    def clear
      @heap.clear
    end

    def each(&block)
      @heap.each(&block)
    end

    # The job that fires first (nil when empty).
    def peek
      @heap[0]
    end

    def push(job)
      heap = @heap
      heap << job
      i = heap.size - 1
      epoch = job.next_epoch
      while i.positive?
        parent = (i - 1) >> 1
        break if heap[parent].next_epoch <= epoch

        heap[i] = heap[parent]
        i = parent
      end
      heap[i] = job
      self
    end

    def pop
      heap = @heap
      top = heap[0]
      last = heap.pop
      return top if heap.empty?

      size = heap.size
      epoch = last.next_epoch
      i = 0
      loop do
        child = (2 * i) + 1
        break if child >= size

        right = child + 1
        child = right if right < size && heap[right].next_epoch < heap[child].next_epoch
        break if heap[child].next_epoch >= epoch

        heap[i] = heap[child]
        i = child
      end
      heap[i] = last
      top
    end
  end
end

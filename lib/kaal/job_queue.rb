# frozen_string_literal: true

module Kaal
  # The jobs by next fire time (Integer Unix seconds): a bucket of jobs per
  # epoch plus a binary min-heap of the distinct epochs. A job's next fire
  # time is the epoch of the bucket it is in: the queue keeps it, not the
  # job (a Job keeps three instance variables, inside the object).
  # Jobs often share fire times (every hour at :00), so taking the due jobs
  # costs O(due + distinct due epochs · log e) and a tick with nothing due
  # only looks at the heap's top.
  class JobQueue
    attr_reader :size

    def initialize
      @buckets = {}
      @epochs = []
      @unsorted = {} # epochs whose bucket may not be in key order
      @size = 0
    end

    def empty?
      @size.zero?
    end

    def clear
      @buckets.clear
      @epochs.clear
      @unsorted.clear
      @size = 0
    end

    def each(&block)
      @buckets.each_value { |jobs| jobs.each(&block) }
    end

    # Yields each job with its next epoch.
    def each_with_epoch
      return enum_for(:each_with_epoch) unless block_given?

      @buckets.each { |epoch, jobs| jobs.each { |job| yield job, epoch } }
    end

    # The earliest next fire epoch (nil when empty).
    def next_epoch
      @epochs[0]
    end

    def push(job, epoch)
      bucket_for(epoch) << job
      @size += 1
      self
    end

    # Pushes each job at its epoch (epochs[i] for jobs[i]); a run of jobs
    # with one epoch costs one bucket lookup (a tick puts back whole
    # buckets). jobs must be in key order (as pop_due yields them), so a
    # bucket this call creates is too.
    def push_all(jobs, epochs)
      bucket = nil
      last = nil
      i = 0
      n = jobs.size
      while i < n
        job = jobs[i]
        epoch = epochs[i]
        if bucket.nil? || epoch != last
          bucket = bucket_for(epoch)
          last = epoch
        end
        bucket << job
        i += 1
      end
      @size += n
      self
    end

    # Pushes jobs (in key order) at one epoch: a bucket pop_due took, put back.
    def push_at(epoch, jobs)
      bucket_for(epoch).concat(jobs)
      @size += jobs.size
      self
    end

    # Pushes the jobs of a first placement: placed is {epoch => jobs}, the
    # jobs in registration order, not key order: their buckets are sorted
    # when taken. A new bucket is the list itself (no copy).
    def push_placed(placed)
      placed.each do |epoch, jobs|
        if (bucket = @buckets[epoch])
          bucket.concat(jobs)
        else
          heap_push(epoch)
          @buckets[epoch] = jobs
        end
        @unsorted[epoch] = true
        @size += jobs.size
      end
      self
    end

    # Removes the jobs whose next epoch is <= +hi+ and yields (epoch, jobs)
    # per epoch, earliest first, the jobs in key order. Only a bucket that
    # got jobs from more than one push is sorted: jobs put back with
    # push_all in the order they came keep their buckets in order, so a
    # steady schedule sorts once.
    def pop_due(hi)
      while (epoch = @epochs[0]) && epoch <= hi
        heap_pop
        jobs = @buckets.delete(epoch)
        @size -= jobs.size
        jobs.sort_by!(&:key) if @unsorted.delete(epoch)
        yield epoch, jobs
      end
    end

    private

    # The bucket to add jobs to at epoch: a new one (on the heap), or the
    # existing one, which may then lose its key order.
    def bucket_for(epoch)
      if (bucket = @buckets[epoch])
        @unsorted[epoch] = true
        bucket
      else
        heap_push(epoch)
        @buckets[epoch] = []
      end
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

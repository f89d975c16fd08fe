# frozen_string_literal: true

module Kaal
  # The registered jobs: those from the scheduler file and those registered
  # in code. A key in both is refused unless the scheduler_conflict_policy is
  # code_wins or file_wins. Thread-safe; every change bumps #generation so
  # the scheduler knows to rebuild its queue.
  class Registry
    attr_reader :generation, :file_path

    def initialize
      @lock = Mutex.new
      @code = {}
      @file = {}
      @file_path = nil
      @generation = 0
      @effective = {}
    end

    def register(job, policy:)
      @lock.synchronize do
        if @code.key?(job.key)
          raise ConfigurationError, "#{job.location}: key: #{job.key.inspect} is already registered in code (Kaal.unregister it first)"
        end
        if @file.key?(job.key) && policy == :error
          raise ConfigurationError, "#{job.location}: key: also defined in #{@file[job.key].location}; " \
                                    "remove one, or set scheduler_conflict_policy to code_wins or file_wins"
        end

        @code[job.key] = job
        @effective[job.key] = job unless policy == :file_wins && @file.key?(job.key)
        @generation += 1
      end
      job
    end

    def unregister(key, policy:)
      @lock.synchronize do
        key = key.to_s
        removed = @code.delete(key)
        if removed
          @file.key?(key) ? @effective[key] = @file[key] : @effective.delete(key)
          @generation += 1
        end
        !removed.nil?
      end
    end

    # Replaces the file jobs with +jobs+ (a job no longer in the file is
    # gone on the next tick).
    def replace_file_jobs(jobs, path, policy:)
      @lock.synchronize do
        fresh = {}
        jobs.each do |job|
          if @code.key?(job.key) && policy == :error
            raise ConfigurationError, conflict_message(job.key, job.location)
          end

          fresh[job.key] = job
        end
        @file = fresh
        @file_path = path
        rebuild(policy)
      end
    end

    # key => Job of the jobs in force (a copy).
    def jobs
      @lock.synchronize { @effective.dup }
    end

    def size
      @effective.size
    end

    def [](key)
      @effective[key.to_s]
    end

    def clear
      @lock.synchronize do
        @code = {}
        @file = {}
        @file_path = nil
        @effective = {}
        @generation += 1
      end
    end

    private

    def rebuild(policy)
      @effective = policy == :file_wins ? @code.merge(@file) : @file.merge(@code)
      @generation += 1
    end

    def conflict_message(key, location)
      "#{location}: key: #{key.inspect} is defined both in code (Kaal.register) and in the scheduler file; " \
        "remove one, or set scheduler_conflict_policy to code_wins or file_wins"
    end
  end
end

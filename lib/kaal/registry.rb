# frozen_string_literal: true

module Kaal
  # The registered jobs: those from the scheduler file and those registered
  # in code. A key in both is refused unless the scheduler_conflict_policy is
  # code_wins or file_wins. Thread-safe; every change bumps #generation so
  # the scheduler knows to rebuild its queue.
  #
  # At a million jobs the tables are the memory: the jobs in force are the
  # code or file table itself when the other one is empty (no merged copy),
  # and #jobs hands out that table frozen instead of a copy; the next change
  # copies it first (copy on write).
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
      key = job.key
      @lock.synchronize do
        code = @code
        if code.key?(key)
          raise ConfigurationError, "#{job.location}: key: #{key.inspect} is already registered in code (Kaal.unregister it first)"
        end

        file = @file
        if !file.empty? && policy == :error && file.key?(key)
          raise ConfigurationError, "#{job.location}: key: also defined in #{file[key].location}; " \
                                    "remove one, or set scheduler_conflict_policy to code_wins or file_wins"
        end

        code = @code = code.dup if code.frozen? # handed out by #jobs
        code[key] = job
        if file.empty?
          @effective = code
        elsif !(policy == :file_wins && file.key?(key))
          writable(:@effective)[key] = job
        end
        @generation += 1
      end
      job
    end

    def unregister(key, policy:)
      @lock.synchronize do
        key = key.to_s
        removed = @code.key?(key) ? writable(:@code).delete(key) : nil
        if removed
          if @file.empty?
            @effective = @code
          elsif @file.key?(key)
            writable(:@effective)[key] = @file[key]
          else
            writable(:@effective).delete(key)
          end
          @generation += 1
        end
        !removed.nil?
      end
    end

    # Replaces the file jobs with +jobs+ (a list, or a Hash key => Job kept
    # as it is); a job no longer in the file is gone on the next tick.
    def replace_file_jobs(jobs, path, policy:)
      @lock.synchronize do
        fresh = jobs.is_a?(Hash) ? jobs : jobs.to_h { |job| [job.key, job] }
        if policy == :error && !@code.empty?
          fresh.each_value do |job|
            raise ConfigurationError, conflict_message(job.key, job.location) if @code.key?(job.key)
          end
        end
        @file = fresh
        @file_path = path
        rebuild(policy)
      end
    end

    # key => Job of the jobs in force (frozen; later changes do not show in it).
    def jobs
      @lock.synchronize { @effective.freeze }
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
      @effective = if @code.empty? then @file
                   elsif @file.empty? then @code
                   else policy == :file_wins ? @code.merge(@file) : @file.merge(@code)
                   end
      @generation += 1
    end

    # The table in +ivar+, ready to change: a copy when it is frozen (handed
    # out by #jobs) or shared with the jobs in force.
    def writable(ivar)
      table = instance_variable_get(ivar)
      shared = ivar == :@effective && (table.equal?(@code) || table.equal?(@file))
      return table unless table.frozen? || shared

      instance_variable_set(ivar, table.dup)
    end

    def conflict_message(key, location)
      "#{location}: key: #{key.inspect} is defined both in code (Kaal.register) and in the scheduler file; " \
        "remove one, or set scheduler_conflict_policy to code_wins or file_wins"
    end

    public

    # Registers +jobs+ as #register would, one after the other, under one
    # lock and with one generation bump (a node loading its stored
    # schedules). A job #register would refuse is left out; returns those as
    # [job, ConfigurationError] pairs.
    def register_all(jobs, policy:)
      refused = []
      @lock.synchronize do
        code = writable(:@code)
        file = @file
        # a batch as big as the table (a node loading its stored schedules)
        # next to a scheduler file: the jobs in force made in one copy, not
        # one insert per job (see #in_force)
        copy = !file.empty? && jobs.size >= code.size && file.size <= jobs.size
        effective = file.empty? || copy ? nil : writable(:@effective)
        contested = {} # keys of the batch the file has too
        jobs.each do |job|
          key = job.key
          if code.key?(key) || (policy == :error && file.key?(key))
            refused << [job, ConfigurationError.new(register_problem(job, code, policy))]
          else
            code[key] = job
            if effective
              effective[key] = job unless policy == :file_wins && file.key?(key)
            elsif copy && file.key?(key)
              contested[key] = true
            end
          end
        end
        if file.empty? then @effective = code
        elsif copy then @effective = in_force(code, contested, policy)
        end
        @generation += 1 if refused.size < jobs.size
      end
      refused
    end

    # The stored schedule's job registered under +key+ (a job whose source
    # is :stored, whether or not it is in force), or nil.
    def stored_job(key)
      job = @code[key]
      job if job&.source == :stored
    end

    # key => job of every stored schedule registered (a copy).
    def stored_jobs
      @lock.synchronize { @code.select { |_, job| job.source == :stored } }
    end

    private

    # The jobs in force after #register_all took a big batch, as its one
    # insert per job would have left them: the code jobs, then each file
    # job where the code has no job of its key; for a key in both, the one
    # in force before, or for a key of the batch (+contested+) the code job
    # unless +policy+ is file_wins.
    def in_force(code, contested, policy)
      before = @effective
      table = code.dup
      @file.each do |key, file_job|
        winner = if !code.key?(key) then file_job
                 elsif contested.key?(key) then policy == :file_wins ? file_job : nil
                 else before[key]
                 end
        table[key] = winner if winner
      end
      table
    end

    # Why #register would refuse +job+ (nil: it would not).
    def register_problem(job, code, policy)
      if code.key?(job.key)
        "#{job.location}: key: #{job.key.inspect} is already registered in code (Kaal.unregister it first)"
      elsif policy == :error && @file.key?(job.key)
        "#{job.location}: key: also defined in #{@file[job.key].location}; " \
          "remove one, or set scheduler_conflict_policy to code_wins or file_wins"
      end
    end
  end
end

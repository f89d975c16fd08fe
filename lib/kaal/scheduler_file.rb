# frozen_string_literal: true

module Kaal
  # config/kaal-scheduler.yml: a `jobs:` list under `defaults:` and under
  # environment sections. A job in the environment section with the key of a
  # default job is merged over it (so `enabled: false` in production turns a
  # default job off); other jobs are added.
  module SchedulerFile
    # Where a job is in the file ("config/kaal-scheduler.yml:
    # defaults.jobs[3]"), made into text only when a message needs it: a
    # file of a million jobs keeps a million of these, not a million Strings.
    Location = Struct.new(:path, :section, :index) do
      def to_s
        "#{path}: #{label}"
      end

      def label
        "#{section ? "#{section}." : ""}jobs[#{index}]"
      end
    end

    # The entries of one jobs list as the streamed read keeps them: key =>
    # Job in file order, so a job's entry is its position (looked up only
    # when a message needs it). A job of a million defined alike holds
    # nothing of its own for its location: its Spec points here (Spec#at).
    class Entries
      def initialize(path, section, table)
        @path = path
        @section = section
        @table = table
        @positions = nil
      end

      # The Location of the job with +key+.
      def of(key)
        positions = @positions ||= @table.each_key.with_index.to_h
        Location.new(@path, @section, positions[key])
      end
    end

    FIELD_NAMES = Job::FIELDS.to_h { |f| [f, true] }.freeze
    private_constant :FIELD_NAMES

    module_function

    # Raised inside a streamed read: the file needs the general path below.
    class Fallback < StandardError; end
    private_constant :Fallback

    # Returns the Jobs of +path+ for +env_name+. Raises ConfigurationError
    # naming the file, the job and the field.
    def load(path, env_name, default_time_zone:)
      table(path, env_name, default_time_zone: default_time_zone).values
    end

    # The jobs of +path+ for +env_name+ by key (in file order). A plain
    # file whose environment section adds no jobs is streamed: each job is
    # built as soon as its entry is read (Native.yaml_blocks with an item
    # callback), so the parsed document of a million entries never exists.
    # Anything else, and any mistake, goes through #load_entries: the same
    # result and the same errors.
    def table(path, env_name, default_time_zone:)
      streamed(path, env_name, default_time_zone) ||
        load_entries(path, env_name, default_time_zone).to_h { |job| [job.key, job] }
    end

    def streamed(path, env_name, default_time_zone)
      return nil unless defined?(Native.yaml_blocks) && env_name != "defaults" && File.file?(path)

      File.open(path, "rb") { |io| streamed_from(io, path, env_name, default_time_zone) }
    rescue StandardError # Fallback, a ConfigurationError: the general path says it
      nil
    end

    PART = 1 << 20
    LOCATED_MAX = 4096
    private_constant :PART, :LOCATED_MAX

    # The file is read a part at a time (a megabyte and the rest of its
    # last line), so a big file is never in memory whole either.
    def streamed_from(io, path, env_name, default_time_zone)
      more = lambda do
        part = io.read(PART)
        next nil if part.nil?

        rest = io.gets
        part << rest if rest
        raise Fallback if part.include?("<%") # ERB (a tag never spans a line)

        part.force_encoding(Encoding::UTF_8)
      end
      first = more.call || "".dup.force_encoding(Encoding::UTF_8)
      tables = { nil => {}, "defaults" => {} }
      places = tables.to_h { |section, table| [section, Entries.new(path, section, table)] }
      located = tables.to_h { |section, _| [section, {}.compare_by_identity] } # Spec => Spec#at the section's Entries
      # the Spec of the jobs of a run alike, at their section's Entries
      at_place = lambda do |spec, section|
        bases = located[section]
        bases.clear if bases.size >= LOCATED_MAX
        return bases[spec] ||= spec.at(places[section]) unless spec.is_a?(Job::ArgsSpec)

        Job::ArgsSpec.new(bases[spec.base] ||= spec.base.at(places[section]), spec.args, spec.templated)
      end
      alike = alike_spec = alike_at = alike_section = nil # the last entry built (without its key), its Spec, ...
      # [Job, Spec, table] while the entries are alike, and [ArgsSpec, base,
      # templated] while they differ only in args: the reader then makes the
      # next ones written as the last (but for the key, or the args) itself
      recipe = []
      data = Native.yaml_blocks(first, YamlLoader.method(:tokenize_plain), lambda do |section, index, entry|
        recipe.clear
        table = tables[section]
        return entry if table.nil? # another environment's section: not read
        raise Fallback unless entry.is_a?(Hash)

        key = entry.delete("key").freeze # the entry's own String: the Job keeps it instead of a copy
        if alike_spec && section == alike_section && entry.eql?(alike)
          # defined like the previous entry: its checked Spec, only the key to check
          job = Job.build_alike(key, nil, alike_at ||= at_place.call(alike_spec, section))
        else
          entry.each_key { |k| raise Fallback unless FIELD_NAMES.key?(k) } # the reader's keys are Strings
          job = build(entry, Location.new(path, section, index), path, default_time_zone, key)
          alike = entry
          alike_spec = job.spec
          alike_section = section
          # the previous entry differed only in args: the next ones may too
          alike_at = alike_spec.is_a?(Job::ArgsSpec) ? at_place.call(alike_spec, section) : nil
        end
        size = table.size
        table[job.key] = job
        raise Fallback if table.size == size # a duplicate key: said by the general path

        if alike_at
          recipe.push(Job, alike_at, table)
          if alike_at.is_a?(Job::ArgsSpec)
            recipe.push(Job::ArgsSpec, alike_at.base, alike_at.base.kwargs_templated?)
          end
        end
        job
      end, more, recipe)
      return nil unless data.is_a?(Hash)

      sectioned = data.key?("defaults") || data.key?(env_name) || ConfigFile::WELL_KNOWN_ENVS.any? { |e| data.key?(e) }
      top = sectioned ? data["defaults"] : data
      current = sectioned ? data[env_name] : nil
      return nil unless (top.nil? || top.is_a?(Hash)) && (current.nil? || current.is_a?(Hash))
      return nil unless top.nil? || top.each_key.all?("jobs")
      return nil unless current.nil? || (current.each_key.all?("jobs") && (current["jobs"].nil? || current["jobs"] == []))

      list = top && top["jobs"]
      table = tables[sectioned ? "defaults" : nil]
      return {} if list.nil? && table.empty?
      return nil unless list.is_a?(Array) && list.size == table.size

      table
    end

    def load_entries(path, env_name, default_time_zone)
      entries = ConfigFile.load(path, env_name, what: "scheduler file") do |defaults, current|
        check_top(defaults, path, "defaults")
        check_top(current, path, env_name)
        merge_jobs(jobs_of(defaults, path, "defaults"), jobs_of(current, path, env_name), path)
      end
      unless entries.is_a?(Array) # a file without sections
        check_top(entries, path, nil)
        entries = jobs_of(entries, path, nil)
      end
      jobs = Array.new(entries.size)
      entries.each_index do |i|
        location, entry = entries[i]
        entries[i] = nil # a parsed entry may go once its Job exists (memory, for huge files)
        jobs[i] = build(entry, location, path, default_time_zone)
      end
      jobs
    end

    private_class_method :streamed, :streamed_from, :load_entries

    def check_top(section, path, name)
      section.each_key do |k|
        next if k == "jobs"

        where = name ? "section #{name}: " : ""
        raise ConfigurationError, "#{path}: #{where}unknown key #{k.to_s.inspect} (valid keys: jobs)"
      end
    end

    # [[label, Hash], ...] of one section, with duplicate keys refused.
    def jobs_of(section, path, name)
      list = section["jobs"]
      return [] if list.nil?

      where = name ? "#{name}." : ""
      raise ConfigurationError, "#{path}: #{where}jobs: must be a list of jobs, got #{list.class}" unless list.is_a?(Array)

      seen = {}
      list.each_with_index.map do |entry, i|
        label = Location.new(path, name, i)
        raise ConfigurationError, "#{label}: must be a mapping with key, cron, job_class, ..., got #{entry.class}" unless entry.is_a?(Hash)

        unknown = entry.each_key.find { |k| !FIELD_NAMES.key?(k.is_a?(String) ? k : k.to_s) }
        unless unknown.nil?
          raise ConfigurationError, "#{label}#{key_label(entry)}: unknown field #{unknown.to_s.inspect} " \
                                    "(valid fields: #{Job::FIELDS.join(", ")})"
        end
        key = entry["key"]
        if key.is_a?(String) || key.is_a?(Symbol)
          key = key.to_s
          if seen.key?(key)
            raise ConfigurationError, "#{label} (job #{key.inspect}): key: duplicate job key " \
                                      "(also #{where}jobs[#{seen[key]}])"
          end
          seen[key] = i
        end
        [label, entry]
      end
    end

    def merge_jobs(defaults, current, _path)
      merged = defaults.dup
      return merged if current.empty?

      first = {} # key text => index of the first entry with it (a lookup, not a scan per entry)
      merged.each_with_index { |(_, e), i| first[e["key"].to_s] ||= i }
      current.each do |label, entry|
        idx = entry["key"].nil? ? nil : first[entry["key"].to_s]
        if idx
          merged[idx] = [label, merged[idx][1].merge(entry)]
        else
          merged << [label, entry]
          first[entry["key"].to_s] ||= merged.size - 1
        end
      end
      merged
    end

    def key_label(entry)
      entry["key"] ? " (job #{entry["key"].to_s.inspect})" : ""
    end

    def build(entry, location, _path, default_time_zone, key = entry["key"])
      raise ConfigurationError, "#{location}#{key_label(entry)}: cron: missing" unless entry.key?("cron")

      # Job.new(key:, cron:, ..., location:, source: :file), positional (Job.build)
      Job.build(key, location,
                [entry["cron"], entry["time_zone"] || default_time_zone, entry["job_class"], nil, entry["queue"],
                 entry["priority"], entry["set"], entry["args"], entry["kwargs"], entry["catch_up"],
                 entry.fetch("enabled", true), :file, entry["handoff"]])
    end
  end
end

# frozen_string_literal: true

require "erb"
require_relative "yaml_loader"

module Kaal
  # Reads one of kaal's YAML files: ERB first, then YAML, then the
  # `defaults:` section merged with the section of the current environment
  # (KAAL_ENV, RAILS_ENV, RACK_ENV, APP_ENV, else "development"). A file
  # without any section (no `defaults:` and no environment names at the top)
  # is used as it is.
  module ConfigFile
    ENV_VARS = %w[KAAL_ENV RAILS_ENV RACK_ENV APP_ENV].freeze
    WELL_KNOWN_ENVS = %w[development test staging production].freeze

    module_function

    # The environment name in force (+explicit+ wins).
    def environment(explicit = nil, env = ENV)
      return explicit.to_s unless explicit.nil? || explicit.to_s.empty?

      ENV_VARS.each { |var| return env[var] if env[var] && !env[var].empty? }
      "development"
    end

    # Returns the merged Hash (String keys) for +env_name+. Raises
    # ConfigurationError naming +path+ for a missing file, ERB or YAML errors,
    # or a document that is not a mapping. +merge+ decides how a section is
    # merged over defaults (a block receiving defaults and section).
    def load(path, env_name, what:)
      raise ConfigurationError, "#{path}: #{what} not found (run `kaal init`, or pass --config PATH)" unless File.file?(path)

      data = parse(File.read(path), path)
      sectioned = data.key?("defaults") || data.key?(env_name) || WELL_KNOWN_ENVS.any? { |e| data.key?(e) }
      return data unless sectioned

      defaults = section(data, "defaults", path)
      current = section(data, env_name, path)
      block_given? ? yield(defaults, current) : deep_merge(defaults, current)
    end

    def parse(text, path)
      # Text without "<%" has no ERB tag: it renders as itself.
      rendered = text.include?("<%") ? ERB.new(text, trim_mode: "-").result(TOPLEVEL_BINDING.dup) : text
      data = YamlLoader.load(rendered, filename: path)
      data = {} if data.nil?
      raise ConfigurationError, "#{path}: expected a mapping at the top of the file, got #{data.class}" unless data.is_a?(Hash)

      data
    rescue *psych_errors(:SyntaxError) => e
      raise ConfigurationError, "#{path}: line #{e.line}: invalid YAML (#{e.problem})"
    rescue *psych_errors(:DisallowedClass, :BadAlias) => e
      raise ConfigurationError, "#{path}: #{e.message}"
    rescue ConfigurationError
      raise
    rescue StandardError, ScriptError => e
      raise ConfigurationError, "#{path}: ERB error: #{e.message} (#{e.class})"
    end

    # Psych's exception classes of these names, none while Psych is not
    # loaded (YamlLoader loads it only for a document that needs it).
    def psych_errors(*names)
      defined?(Psych::Exception) ? names.map { |name| Psych.const_get(name) } : []
    end

    # The environment section names of the file at +path+ (its top-level
    # keys other than defaults; [] for a file without sections).
    def environment_sections(path)
      data = parse(File.read(path), path)
      sectioned = data.key?("defaults") || WELL_KNOWN_ENVS.any? { |e| data.key?(e) }
      sectioned ? data.keys.map(&:to_s) - ["defaults"] : []
    end

    def section(data, name, path)
      value = data[name]
      return {} if value.nil?
      raise ConfigurationError, "#{path}: section #{name}: must be a mapping, got #{value.class}" unless value.is_a?(Hash)

      value
    end

    def deep_merge(base, over)
      base.merge(over) do |_, a, b|
        a.is_a?(Hash) && b.is_a?(Hash) ? deep_merge(a, b) : b
      end
    end
  end
end

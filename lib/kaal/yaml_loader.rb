# frozen_string_literal: true

module Kaal
  # YAML.safe_load(text, aliases: true) without the node tree: Ruby values
  # are built straight from the parser's events, so a scheduler file with
  # 10,000 jobs costs about 4 MB to read instead of 17 MB. A document that
  # uses a tag, a merge key (<<) or several documents is handed to
  # YAML.safe_load itself, so the result is always safe_load's. Psych is
  # loaded only when a document needs it: a plain block file whose values
  # are words, numbers and cron expressions is read without it (a
  # process's start does not pay for loading it).
  module YamlLoader
    # Raised inside the builder when the document needs YAML.safe_load.
    class Fallback < StandardError; end

    module_function

    # Same result and errors as YAML.safe_load(text, aliases: true, filename:).
    # Plain block YAML (what kaal's files are, however long) is read by
    # Kaal::Native.yaml_blocks in C; anything else by Psych's parser here.
    def load(text, filename: nil)
      fast = blocks(text)
      return fast unless fast.nil?

      require_relative "yaml_builder"
      builder = Builder.new
      Psych::Parser.new(builder).parse(text, filename)
      builder.root
    rescue Fallback
      require "yaml"
      YAML.safe_load(text, aliases: true, filename: filename)
    end

    # The value of a plain block document, or nil (then Psych reads it).
    # Plain scalars that are not simply words go through Psych's own scalar
    # rules, once per distinct text (a cron expression repeated on a million
    # lines is typed once; each entry still gets its own String).
    def blocks(text)
      return nil unless defined?(Native.yaml_blocks)

      Native.yaml_blocks(text, method(:tokenize_plain))
    rescue Fallback
      nil
    end

    TYPED_MAX = 4096
    @typed = {}
    @scanner = nil # Psych's, made when first needed

    # A plain scalar's value by Psych's rules (typed once per distinct text,
    # a bounded table); raises Fallback for what Psych would refuse.
    def tokenize_plain(plain)
      typed = @typed
      value = typed.fetch(plain) do
        typed.clear if typed.size >= TYPED_MAX
        typed[plain.freeze] = begin
          scanner.tokenize(plain)
        rescue StandardError
          raise Fallback # a date, a symbol: Psych says what is wrong, about the whole document
        end
      end
      value.is_a?(String) ? value.dup : value
    end

    # Psych's rules for plain scalars (YAML 1.1 types, as YAML.safe_load).
    def scanner
      @scanner ||= begin
        require "psych"
        Psych::ScalarScanner.new(Psych::ClassLoader::Restricted.new([], []))
      end
    end
  end
end

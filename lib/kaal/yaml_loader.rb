# frozen_string_literal: true

require "psych"

module Kaal
  # YAML.safe_load(text, aliases: true) without the node tree: Ruby values
  # are built straight from the parser's events, so a scheduler file with
  # 10,000 jobs costs about 4 MB to read instead of 17 MB. A document that
  # uses a tag, a merge key (<<) or several documents is handed to
  # YAML.safe_load itself, so the result is always safe_load's.
  module YamlLoader
    # Raised inside the builder when the document needs YAML.safe_load.
    class Fallback < StandardError; end

    # Builds the first document's value from parser events.
    class Builder < Psych::Handler
      attr_reader :root

      def initialize
        super
        @stack = [] # [container, pending key, key seen?]
        @anchors = {}
        @scanner = Psych::ScalarScanner.new(Psych::ClassLoader::Restricted.new([], []))
        @documents = 0
        @root = nil
      end

      def start_document(_version, _tag_directives, _implicit)
        @documents += 1
        raise Fallback if @documents > 1
      end

      def start_mapping(anchor, tag, _implicit, _style)
        open({}, anchor, tag)
      end

      def start_sequence(anchor, tag, _implicit, _style)
        open([], anchor, tag)
      end

      def end_mapping
        add(@stack.pop[0])
      end
      alias end_sequence end_mapping

      def scalar(value, anchor, tag, plain, quoted, _style)
        raise Fallback if tag

        # As Psych's ToRuby: quoted and block scalars are Strings, plain ones
        # are typed (Integer, Float, true, nil; Symbol or Date is refused).
        v = quoted ? value : @scanner.tokenize(value)
        raise Fallback if value == "<<" && key_expected? # Psych merges on a quoted << too

        @anchors[anchor] = v if anchor
        add(v)
      end

      def alias(anchor)
        raise Psych::BadAlias, "Unknown alias: #{anchor}" unless @anchors.key?(anchor)

        add(@anchors[anchor])
      end

      private

      def open(container, anchor, tag)
        raise Fallback if tag

        @anchors[anchor] = container if anchor
        @stack << [container, nil, false]
      end

      def key_expected?
        frame = @stack.last
        frame && frame[0].is_a?(Hash) && !frame[2]
      end

      def add(value)
        frame = @stack.last
        return @root = value if frame.nil?

        container = frame[0]
        if container.is_a?(Array)
          container << value
        elsif frame[2]
          container[frame[1]] = value
          frame[1] = nil
          frame[2] = false
        else
          frame[1] = value
          frame[2] = true
        end
      end
    end

    module_function

    # Same result and errors as YAML.safe_load(text, aliases: true, filename:).
    # Plain block YAML (what kaal's files are, however long) is read by
    # Kaal::Native.yaml_blocks in C; anything else by Psych's parser here.
    def load(text, filename: nil)
      fast = blocks(text)
      return fast unless fast.nil?

      builder = Builder.new
      Psych::Parser.new(builder).parse(text, filename)
      builder.root
    rescue Fallback
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
    @scanner = Psych::ScalarScanner.new(Psych::ClassLoader::Restricted.new([], []))

    # A plain scalar's value by Psych's rules (typed once per distinct text,
    # a bounded table); raises Fallback for what Psych would refuse.
    def tokenize_plain(plain)
      typed = @typed
      value = typed.fetch(plain) do
        typed.clear if typed.size >= TYPED_MAX
        typed[plain.freeze] = begin
          @scanner.tokenize(plain)
        rescue StandardError
          raise Fallback # a date, a symbol: Psych says what is wrong, about the whole document
        end
      end
      value.is_a?(String) ? value.dup : value
    end
  end
end

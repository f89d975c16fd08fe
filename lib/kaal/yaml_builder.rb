# frozen_string_literal: true

require "psych"

module Kaal
  module YamlLoader
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
  end
end

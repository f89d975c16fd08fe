# frozen_string_literal: true

module Kaal
  # Job keys, job ids, class and queue names, the namespace and node names
  # live in VARCHAR(255) columns on the SQL backends. Text that one backend
  # could not store is refused on every backend, where it is given (a
  # scheduler file, Kaal.enqueue_at, the configuration), instead of failing
  # the first claim after a switch of backend.
  module StoredText
    MAX_CHARS = 255

    module_function

    # nil when text can be stored as it is, else what is wrong with it.
    def problem(text)
      utf8 = text.encoding == Encoding::UTF_8 ? text : text.dup.force_encoding(Encoding::UTF_8)
      return "must be valid UTF-8" unless utf8.valid_encoding?
      return "must not contain NUL bytes" if utf8.include?("\0")

      chars = utf8.length
      "is #{chars} characters long; at most #{MAX_CHARS} fit a backend's column" if chars > MAX_CHARS
    end

    # text as valid UTF-8 (free text: error messages, log lines): binary and
    # ASCII text taken as UTF-8, other encodings converted, bytes that are
    # not UTF-8 replaced with U+FFFD.
    def utf8(text)
      text = case text.encoding
             when Encoding::UTF_8 then text
             when Encoding::BINARY, Encoding::US_ASCII then text.dup.force_encoding(Encoding::UTF_8)
             else text.encode(Encoding::UTF_8, invalid: :replace, undef: :replace, replace: "\uFFFD")
             end
      text.valid_encoding? ? text : text.scrub("\uFFFD")
    end
  end
end

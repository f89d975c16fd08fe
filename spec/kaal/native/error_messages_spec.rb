# frozen_string_literal: true

require "spec_helper"
require "socket"

# Messages of the exceptions raised by the extension quote user input (job
# ids, expressions) and server text: they are UTF-8 Strings that can be
# interpolated into the application's own strings, and a shortened quote
# never ends in half a character.
RSpec.describe "Messages of exceptions raised by the extension" do
  def expect_usable_message(error)
    message = error.message
    expect(message.encoding).to eq(Encoding::UTF_8)
    expect(message).to be_valid_encoding
    expect("échec: #{message}").to start_with("échec: ")
  end

  it "is a UTF-8 String for a cron expression quoting non-ASCII text" do
    expect { Kaal::Cron.parse("café * * * *") }.to raise_error(Kaal::CronSyntaxError) { |e|
      expect_usable_message(e)
      expect(e.message).to include("café")
    }
  end

  it "never splits a character where a long expression is shortened" do
    # The expression is quoted up to 100 bytes and a token up to 40: with the
    # leading "a", both cuts fall inside an "é" (2 bytes).
    [1, 2, 3].each do |lead|
      expression = "#{"a" * lead}#{"é" * 60} * * * *"
      expect { Kaal::Cron.parse(expression) }.to raise_error(Kaal::CronSyntaxError) { |e|
        expect_usable_message(e)
        expect(e.message).to include("...")
      }
    end
    expect { Kaal::Cron.parse("* * * * * #{"€" * 30}") }.to raise_error(Kaal::CronSyntaxError) { |e|
      expect_usable_message(e)
    }
  end

  it "is a UTF-8 String for a job id the backend refuses" do
    backend = Kaal::Backend.build("memory", namespace: "messages-#{Process.pid}")
    expect {
      backend.claim([["café#{"é" * 300}", 1_700_000_000]], lease_ms: 1000, node: "n", now: 1_700_000_000)
    }.to raise_error(ArgumentError) { |e| expect_usable_message(e) }
  ensure
    backend&.close
  end

  it "is a UTF-8 String for an unknown backend name given to the native class" do
    expect { Kaal::Native::Backend.new("café", "ns", {}) }.to raise_error(Kaal::ConfigurationError) { |e|
      expect_usable_message(e)
      expect(e.message).to include("café")
    }
  end

  describe "connecting to a closed port" do
    URLS_FOR_CLOSED_PORT = {
      redis: "redis://127.0.0.1:%d/0",
      postgres: "postgres://kaal@127.0.0.1:%d/kaal",
      mysql: "mysql://kaal@127.0.0.1:%d/kaal"
    }.freeze

    # A port nothing listens on: taken from the kernel, then released.
    def closed_port
      server = TCPServer.new("127.0.0.1", 0)
      server.addr[1]
    ensure
      server&.close
    end

    URLS_FOR_CLOSED_PORT.each do |kind, url|
      it "raises Kaal::ConnectionError (a Kaal::BackendError) on #{kind}" do
        skip "the #{kind} backend is not compiled in" unless Kaal::Native.backends.include?(kind.to_s)

        backend = Kaal::Backend.build(kind, namespace: "closed-#{Process.pid}",
                                            config: { url: format(url, closed_port) })
        expect { backend.migrate }.to raise_error(Kaal::ConnectionError) { |e|
          expect(e).to be_a(Kaal::BackendError)
          expect_usable_message(e)
        }
      ensure
        backend&.close
      end
    end
  end
end

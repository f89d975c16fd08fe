# frozen_string_literal: true

# The kaal CLI's runtime commands, for apps that prefer rake:
#   bin/rails kaal:start    (= bundle exec kaal start)
#   bin/rails kaal:status   (= bundle exec kaal status)
#   bin/rails kaal:tick     (= bundle exec kaal tick)
namespace :kaal do
  { start: "Run the kaal scheduler in the foreground (TERM/INT stop it gracefully)",
    status: "Show kaal's settings, jobs, live nodes and recent dispatches",
    tick: "Run one kaal scheduler tick and print what it dispatched" }.each do |command, description|
    desc description
    task command => :environment do
      require "kaal/cli"
      status = Kaal::CLI.start([command.to_s])
      exit(status) unless status.zero?
    end
  end
end

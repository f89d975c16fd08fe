# frozen_string_literal: true

# The demo's jobs: plain Ruby classes with .perform, loaded by
# `kaal start --require ./jobs.rb`.
module Demo
  def self.say(tag, text)
    $stdout.puts "  >>> [#{tag}] #{text}"
    $stdout.flush
  end

  # Every 3 seconds (config/kaal-scheduler.yml).
  class HeartbeatJob
    def self.perform(fire_time)
      Demo.say("heartbeat", "the scheduler is alive at #{fire_time}")
    end
  end

  # Every 5 seconds, with the deterministic idempotency key of the run.
  class ReportJob
    def self.perform(key, fire_unix, idempotency_key:)
      Demo.say("report", "#{key} for #{Time.at(fire_unix).utc.strftime("%H:%M:%S")} " \
                         "(idempotency key #{idempotency_key[0, 16]}...)")
    end
  end

  # A one-off delayed job, enqueued when the scheduler starts.
  class ReminderJob
    def self.perform(message, enqueued_at)
      Demo.say("reminder", "#{message} (enqueued at #{enqueued_at}, due 4 s later)")
    end
  end
end

# A job registered in code with a block: every 7th second of the minute.
Kaal.register(key: "demo:lucky-seven", cron: "*/7 * * * * *") do |fire_time:|
  Demo.say("block", "registered in code, fired for #{fire_time.strftime("%H:%M:%S")}")
end

Kaal.on_start do
  now = Time.now.utc
  Kaal.enqueue_at(at: now + 4, job_class: Demo::ReminderJob, args: ["hello from a delayed job", now.strftime("%H:%M:%S")],
                  job_id: "demo:reminder:#{now.to_i}:#{Process.pid}")
  Demo.say("demo", "enqueued a delayed Demo::ReminderJob for #{(now + 4).strftime("%H:%M:%S")}; Ctrl-C to stop")
end

# frozen_string_literal: true

require "json"
require "securerandom"
require "openssl"
require "rack"
require "kaal"
require "kaal/manual_run"
require_relative "web/style"
require_relative "web/queries"
require_relative "web/views"

module Kaal
  # The dashboard: a Rack app showing the registered jobs, the dispatch log,
  # live nodes, problems and pending delayed jobs of the Kaal configuration
  # in force in this process, with pause / resume / run now / cancel
  # actions (POST, CSRF-protected; none with read_only: true).
  #
  #   # config.ru
  #   require "kaal/web"
  #   map("/kaal") { run Kaal::Web }                   # or Kaal::Web.new(read_only: true)
  #
  #   # Rails routes
  #   mount Kaal::Web => "/kaal"
  #
  # It has no authentication of its own: put it behind the app's (see the
  # README's Dashboard section). Pages work without JavaScript.
  class Web
    CSRF_COOKIE = "kaal_csrf"
    PER_PAGE = 50

    # The app Kaal::Web.call uses (mounting the class itself).
    def self.call(env)
      (@default ||= new).call(env)
    end

    Context = Struct.new(:base, :csrf, :read_only, :notice, :notice_kind, :namespace, :backend_name, :node, :now,
                         keyword_init: true)

    def read_only
      @read_only.nil? ? Kaal.configuration.read_only == true : @read_only
    end

    # read_only: no actions (buttons are not rendered and POST answers 403);
    # nil (the default) follows the configuration's read_only option at each
    # request. per_page: rows per page of every list.
    def initialize(read_only: nil, per_page: PER_PAGE)
      unless [true, false, nil].include?(read_only)
        raise ArgumentError, "read_only must be true, false or nil (the read_only option), got #{read_only.inspect}"
      end
      raise ArgumentError, "per_page must be an Integer between 1 and 1000, got #{per_page.inspect}" unless per_page.is_a?(Integer) && per_page.between?(1, 1000)

      @read_only = read_only
      @queries = Queries.new(per_page: per_page)
    end

    def call(env)
      request = Rack::Request.new(env)
      path = request.path_info.to_s
      path = "/" if path.empty?
      case request.request_method
      when "GET", "HEAD" then get(request, path)
      when "POST" then post(request, path)
      else text(405, "Method Not Allowed", "Allow" => "GET, HEAD, POST")
      end
    rescue BackendError => e
      html(503, Views.error_page(context(request, nil), 503, "backend unavailable: #{Kaal.redact_text(e.message)}"))
    end

    private

    def get(request, path)
      token = request.cookies[CSRF_COOKIE]
      token = nil unless token.is_a?(String) && token.match?(/\A[0-9a-f]{64}\z/)
      new_token = token.nil? && !read_only
      token ||= SecureRandom.hex(32)
      ctx = context(request, token)
      page = positive(request.params["page"])
      status, body = case path
                     when "/" then [200, Views.jobs_page(ctx, @queries.jobs(page: page, now: ctx.now), @queries.job_count)]
                     when %r{\A/jobs/([^/]+)\z} then job(ctx, unescape(Regexp.last_match(1)), cursor(request.params["before"]))
                     when "/nodes" then [200, Views.nodes_page(ctx, @queries.nodes(now: ctx.now))]
                     when "/problems"
                       [200, Views.problems_page(ctx, @queries.claimed_not_dispatched(now: ctx.now),
                                                 @queries.failures(before: cursor(request.params["before"])))]
                     when "/delayed"
                       [200, Views.delayed_page(ctx, @queries.delayed(after: cursor(request.params["after"])), @queries.delayed_count)]
                     when "/schedules"
                       after = request.params["after"]
                       after = nil unless after.is_a?(String) && !after.empty?
                       [200, Views.schedules_page(ctx, @queries.schedules(after: after, now: ctx.now), @queries.schedule_count)]
                     else [404, Views.error_page(ctx, 404, "no page at #{path}")]
                     end
      headers = {}
      headers["set-cookie"] = csrf_cookie(request, token) if new_token
      html(status, request.head? ? "" : body, headers)
    end

    def job(ctx, key, before)
      job = key && @queries.job(key, now: ctx.now)
      return [404, Views.error_page(ctx, 404, "no job registered with key #{key.inspect}")] unless job

      cron = Kaal.registry[key].cron
      job = job.merge(next_fire_times: cron.next_times(ctx.now, count: 5), explanation: cron.explain)
      [200, Views.job_page(ctx, job, @queries.dispatches(key, before: before))]
    end

    def post(request, path)
      return text(403, "This dashboard is read-only.") if read_only
      return text(403, "Refused: missing or wrong CSRF token (reload the page and try again).") unless csrf_ok?(request)

      notice, kind = case path
                     when %r{\A/jobs/([^/]+)/(pause|resume|run)\z} then job_action(unescape(Regexp.last_match(1)), Regexp.last_match(2))
                     when %r{\A/delayed/([^/]+)/cancel\z} then cancel(unescape(Regexp.last_match(1)))
                     else return text(404, "Not Found")
                     end
      back = path.start_with?("/jobs/") && request.referer.to_s.include?("/jobs/") ? path.sub(%r{/[a-z]+\z}, "") : "/"
      back = "/delayed" if path.start_with?("/delayed/")
      back = "/schedules" if path.start_with?("/jobs/") && request.referer.to_s.include?("/schedules")
      redirect(request, back, notice, kind)
    end

    def job_action(key, action)
      return ["No job registered with key #{key.inspect}.", "bad"] unless key && (Kaal.registry[key] || Kaal.schedules.find(key))

      case action
      when "pause"
        Kaal.disable(key)
        ["Paused #{key}: it does not fire until resumed.", "ok"]
      when "resume"
        Kaal.enable(key)
        ["Resumed #{key}.", "ok"]
      when "run"
        r = Kaal.run_now(key)
        case r.status
        when "dispatched" then ["Ran #{key} now (idempotency key #{r.idempotency_key}).", "ok"]
        when "already_run" then ["#{key} was already run manually this second; nothing dispatched.", "bad"]
        else ["Manual run of #{key} failed: #{r.error}", "bad"]
        end
      end
    rescue ConfigurationError => e
      [e.message, "bad"]
    end

    def cancel(job_id)
      return ["Bad job id.", "bad"] unless job_id

      if Kaal.cancel(job_id)
        ["Cancelled delayed job #{job_id}.", "ok"]
      else
        ["Delayed job #{job_id} is no longer pending.", "bad"]
      end
    rescue ArgumentError => e
      [e.message, "bad"]
    end

    def csrf_ok?(request)
      cookie = request.cookies[CSRF_COOKIE]
      sent = begin
        request.POST["_csrf"]
      rescue StandardError
        nil
      end
      return false unless cookie.is_a?(String) && sent.is_a?(String) && cookie.match?(/\A[0-9a-f]{64}\z/)
      return false unless same_origin?(request)

      OpenSSL.fixed_length_secure_compare(cookie, sent.ljust(64)[0, 64]) && sent.bytesize == 64
    end

    # A browser sends Origin on a POST; when it does, it must be this host.
    def same_origin?(request)
      origin = request.get_header("HTTP_ORIGIN")
      return true if origin.nil? || origin.empty?

      origin == request.base_url
    end

    def csrf_cookie(request, token)
      path = request.script_name.to_s.empty? ? "/" : request.script_name
      secure = request.ssl? ? "; Secure" : ""
      "#{CSRF_COOKIE}=#{token}; Path=#{path}; HttpOnly; SameSite=Strict#{secure}"
    end

    def context(request, token)
      config = Kaal.configuration
      Context.new(base: request.script_name.to_s, csrf: token, read_only: read_only,
                  notice: notice_param(request, "notice"), notice_kind: request.params["kind"] == "bad" ? "bad" : "ok",
                  namespace: config.namespace, backend_name: config.backend, node: Kaal.node_id, now: Clock.now.floor)
    end

    def notice_param(request, name)
      value = request.params[name]
      value.is_a?(String) && !value.empty? ? value[0, 500] : nil
    end

    def redirect(request, path, notice, kind)
      location = "#{request.script_name}#{path}?notice=#{ERB::Util.url_encode(notice)}&kind=#{kind}"
      [303, { "location" => location, "content-type" => "text/plain", "cache-control" => "no-store" }, []]
    end

    # "FIRE:KEY" (a dispatch-log cursor) as [fire_time, key]; nil when absent or malformed.
    def cursor(value)
      return nil unless value.is_a?(String) && (m = value.match(/\A(-?\d{1,18}):(.+)\z/m))

      key = m[2].dup.force_encoding(Encoding::UTF_8)
      key.valid_encoding? && !key.include?("\0") ? [m[1].to_i, key] : nil
    end

    def positive(value)
      n = value.to_s.match?(/\A[1-9][0-9]{0,5}\z/) ? value.to_i : 1
      n.clamp(1, Queries::MAX_PAGE)
    end

    def unescape(segment)
      key = Rack::Utils.unescape_path(segment).dup.force_encoding(Encoding::UTF_8)
      key.valid_encoding? && !key.empty? ? key : nil
    end

    def html(status, body, headers = {})
      [status, { "content-type" => "text/html; charset=utf-8", "cache-control" => "no-store",
                 "x-frame-options" => "DENY", "x-content-type-options" => "nosniff",
                 "content-security-policy" => "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; " \
                                              "frame-ancestors 'none'; base-uri 'none'",
                 "referrer-policy" => "same-origin" }.merge(headers), [body]]
    end

    def text(status, body, headers = {})
      [status, { "content-type" => "text/plain; charset=utf-8" }.merge(headers), [body]]
    end
  end
end

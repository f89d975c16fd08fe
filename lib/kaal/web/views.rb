# frozen_string_literal: true

require "cgi"
require "erb"

module Kaal
  class Web
    # The HTML of the pages. Every value goes through h (or u in URLs); the
    # markup is the only text that is not escaped.
    module Views
      CSS = STYLE

      module_function

      def h(value)
        CGI.escapeHTML(value.to_s)
      end

      def u(value)
        ERB::Util.url_encode(value.to_s)
      end

      def time(t)
        return "—" if t.nil?

        t = Time.at(t).utc if t.is_a?(Integer)
        %(<time datetime="#{h(t.iso8601)}" title="#{h(t.iso8601)}">#{h(t.strftime("%Y-%m-%d %H:%M:%S %:z"))}</time>)
      end

      def ago(seconds)
        seconds = seconds.to_i
        if seconds < 60 then "#{seconds}s ago"
        elsif seconds < 3600 then "#{seconds / 60}m ago"
        elsif seconds < 86_400 then "#{seconds / 3600}h ago"
        else "#{seconds / 86_400}d ago"
        end
      end

      def badge(status)
        cls = case status.to_s
              when "dispatched", "enabled", "live" then "ok"
              when "failed" then "bad"
              when "claimed", "pending" then "warn"
              else "muted"
              end
        %(<span class="badge #{cls}">#{h(status)}</span>)
      end

      def layout(ctx, title:, nav:, body:)
        links = [["", "Jobs", :jobs], ["/problems", "Problems", :problems], ["/nodes", "Nodes", :nodes],
                 ["/delayed", "Delayed", :delayed], ["/schedules", "Stored", :schedules]]
        menu = links.map do |path, label, id|
          %(<a href="#{h(ctx.base)}#{path.empty? ? "/" : path}"#{' aria-current="page"' if id == nav}>#{label}</a>)
        end.join
        notice = ctx.notice ? %(<p class="notice #{h(ctx.notice_kind)}" role="status">#{h(ctx.notice)}</p>) : ""
        <<~HTML
          <!DOCTYPE html>
          <html lang="en">
          <head>
          <meta charset="utf-8">
          <meta name="viewport" content="width=device-width, initial-scale=1">
          <meta name="referrer" content="same-origin">
          <title>#{h(title)} · kaal</title>
          <style>#{CSS}</style>
          </head>
          <body>
          <header class="top">
          <a class="brand" href="#{h(ctx.base)}/">kaal</a>
          <nav>#{menu}</nav>
          <span class="meta">#{h(ctx.namespace)} · #{h(ctx.backend_name)}#{ctx.read_only ? " · read-only" : ""}</span>
          </header>
          <main>
          #{notice}
          #{body}
          </main>
          <footer>kaal #{h(Kaal::VERSION)} · node #{h(ctx.node)} · #{time(ctx.now)}</footer>
          </body>
          </html>
        HTML
      end

      def post_button(ctx, path, label, cls: "", confirm: nil, hidden: {})
        return "" if ctx.read_only

        fields = hidden.map { |k, v| %(<input type="hidden" name="#{h(k)}" value="#{h(v)}">) }.join
        %(<form method="post" action="#{h(ctx.base)}#{h(path)}" class="inline">) +
          %(<input type="hidden" name="_csrf" value="#{h(ctx.csrf)}">#{fields}) +
          %(<button type="submit" class="#{h(cls)}"#{%( data-confirm="#{h(confirm)}") if confirm}>#{h(label)}</button></form>)
      end

      def pager(ctx, page, path, extra = "")
        return "" if page.first? && !page.more

        prev = page.first? ? %(<span class="disabled">← Newer</span>) : %(<a href="#{h(ctx.base)}#{h(path)}?page=#{page.page - 1}#{h(extra)}" rel="prev">← Previous</a>)
        nxt = page.more ? %(<a href="#{h(ctx.base)}#{h(path)}?page=#{page.page + 1}#{h(extra)}" rel="next">Next →</a>) : %(<span class="disabled">Next →</span>)
        %(<nav class="pager">#{prev}<span>page #{page.page}</span>#{nxt}</nav>)
      end

      # Newest / Older links of a dispatch-log page (keyset cursor "fire:key").
      def log_pager(ctx, page, path)
        return "" if page.before.nil? && !page.more

        newest = page.before ? %(<a href="#{h(ctx.base)}#{h(path)}">← Newest</a>) : %(<span class="disabled">← Newest</span>)
        older = if page.more
                  fire, key = page.next_cursor
                  %(<a href="#{h(ctx.base)}#{h(path)}?before=#{h(u("#{fire}:#{key}"))}" rel="next">Older →</a>)
                else
                  %(<span class="disabled">Older →</span>)
                end
        %(<nav class="pager">#{newest}#{older}</nav>)
      end

      # Soonest / Later links of the delayed-jobs page (keyset cursor "ms:id").
      def delayed_pager(ctx, page)
        return "" if page.before.nil? && !page.more

        first = page.before ? %(<a href="#{h(ctx.base)}/delayed">← Soonest</a>) : %(<span class="disabled">← Soonest</span>)
        later = if page.more
                  last = page.rows.last
                  %(<a href="#{h(ctx.base)}/delayed?after=#{h(u("#{last[:run_at_ms]}:#{last[:job_id]}"))}" rel="next">Later →</a>)
                else
                  %(<span class="disabled">Later →</span>)
                end
        %(<nav class="pager">#{first}#{later}</nav>)
      end

      def state_cell(job)
        state = job[:paused] ? "paused" : (job[:source_enabled] ? "enabled" : "disabled")
        source = if !job[:source_enabled] then "disabled in #{job[:source]}"
                 elsif job[:paused] then "paused at runtime"
                 else "from #{job[:source]}"
                 end
        %(#{badge(state)}<small>#{h(source)}</small>)
      end

      def job_actions(ctx, job)
        path = "/jobs/#{u(job[:key])}"
        buttons = []
        buttons << if job[:paused]
                     post_button(ctx, "#{path}/resume", "Resume", cls: "primary")
                   elsif job[:source_enabled]
                     post_button(ctx, "#{path}/pause", "Pause")
                   else
                     "" # its file or code disables it: nothing to pause or resume here
                   end
        buttons << post_button(ctx, "#{path}/run", "Run now", cls: "ghost")
        buttons.join
      end

      def last_run_cell(run)
        return %(<span class="muted">never</span>) unless run

        manual = ManualRun.manual?(run[:key]) ? %( <span class="tag">manual</span>) : ""
        %(#{badge(run[:status])}#{manual}<small>#{time(run[:updated_at] || run[:fire_time])}#{run[:node] ? " on #{h(run[:node])}" : ""}</small>)
      end

      def jobs_page(ctx, page, total)
        rows = page.rows.map do |j|
          nexts = j[:next_fire_times].map { |t| "<li>#{time(t)}</li>" }.join
          <<~ROW
            <tr#{' class="paused"' if j[:paused] || !j[:source_enabled]}>
            <td data-label="Job"><a class="key" href="#{h(ctx.base)}/jobs/#{u(j[:key])}">#{h(j[:key])}</a><small>#{h(j[:job_class])}#{j[:queue] ? " · #{h(j[:queue])}" : ""}</small></td>
            <td data-label="Schedule"><code>#{h(j[:cron])}</code><small>#{h(j[:explanation])}</small></td>
            <td data-label="Zone">#{h(j[:time_zone])}</td>
            <td data-label="Next"><ul class="times">#{nexts}</ul></td>
            <td data-label="Last run">#{last_run_cell(j[:last_run])}</td>
            <td data-label="State" class="state">#{state_cell(j)}</td>
            #{ctx.read_only ? "" : %(<td data-label="" class="actions">#{job_actions(ctx, j)}</td>)}
            </tr>
          ROW
        end.join
        empty = page.rows.empty? ? %(<tr><td colspan="7" class="empty">No jobs registered.</td></tr>) : ""
        body = <<~HTML
          <div class="heading"><h1>Jobs</h1><span class="count">#{total} registered</span></div>
          <div class="table-wrap"><table class="jobs">
          <thead><tr><th>Job</th><th>Schedule</th><th>Zone</th><th>Next fire times</th><th>Last run</th><th>State</th>#{ctx.read_only ? "" : "<th></th>"}</tr></thead>
          <tbody>#{rows}#{empty}</tbody></table></div>
          #{pager(ctx, page, "/")}
        HTML
        layout(ctx, title: "Jobs", nav: :jobs, body: body)
      end

      def dispatch_rows(ctx, rows, show_key: false)
        rows.map do |r|
          lateness = r[:updated_at] && r[:status] != "claimed" ? "#{[r[:updated_at] - r[:fire_time], 0].max}s" : "—"
          manual = ManualRun.manual?(r[:key])
          kind = manual ? %(<span class="tag">manual</span>) : %(<span class="tag sched">scheduled</span>)
          job_key = manual ? ManualRun.job_key(r[:key]) : r[:key]
          key_cell = show_key ? %(<td data-label="Job"><a href="#{h(ctx.base)}/jobs/#{u(job_key)}">#{h(job_key)}</a></td>) : ""
          <<~ROW
            <tr>#{key_cell}<td data-label="Time">#{time(r[:fire_time])}</td><td data-label="Kind">#{kind}</td>
            <td data-label="Status">#{badge(r[:status])}</td><td data-label="Node">#{h(r[:node] || "—")}</td>
            <td data-label="Lateness">#{lateness}</td><td data-label="Error" class="error">#{h(r[:error] ? Kaal.redact_text(r[:error]) : "")}</td></tr>
          ROW
        end.join
      end

      def dispatch_table(ctx, rows, show_key: false)
        head = "#{show_key ? "<th>Job</th>" : ""}<th>Fire / run time</th><th>Kind</th><th>Status</th><th>Node</th><th>Lateness</th><th>Error</th>"
        body = rows.empty? ? %(<tr><td colspan="7" class="empty">Nothing recorded.</td></tr>) : dispatch_rows(ctx, rows, show_key: show_key)
        %(<div class="table-wrap"><table class="log"><thead><tr>#{head}</tr></thead><tbody>#{body}</tbody></table></div>)
      end

      def job_page(ctx, job, page)
        nexts = job[:next_fire_times].map { |t| "<li>#{time(t)}</li>" }.join
        body = <<~HTML
          <div class="heading"><h1 class="key">#{h(job[:key])}</h1><div class="actions">#{job_actions(ctx, job)}</div></div>
          <dl class="facts">
          <div><dt>Schedule</dt><dd><code>#{h(job[:cron])}</code> — #{h(job[:explanation])}</dd></div>
          <div><dt>Zone</dt><dd>#{h(job[:time_zone])}</dd></div>
          <div><dt>Runs</dt><dd>#{h(job[:job_class])}#{job[:queue] ? " on queue #{h(job[:queue])}" : ""}</dd></div>
          <div><dt>State</dt><dd class="state">#{state_cell(job)}</dd></div>
          <div><dt>Next</dt><dd><ul class="times">#{nexts}</ul></dd></div>
          </dl>
          <h2>Dispatch log</h2>
          #{dispatch_table(ctx, page.rows)}
          #{log_pager(ctx, page, "/jobs/#{u(job[:key])}")}
        HTML
        layout(ctx, title: job[:key], nav: :jobs, body: body)
      end

      def nodes_page(ctx, nodes)
        rows = nodes.map do |n|
          <<~ROW
            <tr><td data-label="Node">#{h(n[:node])}</td><td data-label="Last heartbeat">#{time(n[:last_seen])} <small>#{h(ago(ctx.now.to_i - n[:last_seen]))}</small></td>
            <td data-label="Version">#{h(n[:info]["version"] || "—")}</td><td data-label="Pid">#{h(n[:info]["pid"] || "—")}</td>
            <td data-label="Jobs">#{h(n[:info]["jobs"] || "—")}</td><td data-label="Started">#{h(n[:info]["started_at"] || "—")}</td></tr>
          ROW
        end.join
        rows = %(<tr><td colspan="6" class="empty">No live nodes (no heartbeat within heartbeat_ttl).</td></tr>) if nodes.empty?
        body = <<~HTML
          <div class="heading"><h1>Nodes</h1><span class="count">#{nodes.size} live</span></div>
          <div class="table-wrap"><table><thead><tr><th>Node</th><th>Last heartbeat</th><th>Version</th><th>Pid</th><th>Jobs</th><th>Started</th></tr></thead>
          <tbody>#{rows}</tbody></table></div>
        HTML
        layout(ctx, title: "Nodes", nav: :nodes, body: body)
      end

      def problems_page(ctx, stuck, failures)
        body = <<~HTML
          <div class="heading"><h1>Problems</h1></div>
          <h2>Claimed, never dispatched <span class="count">#{stuck.size}</span></h2>
          <p class="hint">A node claimed these runs and recorded no outcome within a lease: it most likely died before dispatching. They are not retried.</p>
          #{dispatch_table(ctx, stuck, show_key: true)}
          <h2>Recent failures</h2>
          #{dispatch_table(ctx, failures.rows, show_key: true)}
          #{log_pager(ctx, failures, "/problems")}
        HTML
        layout(ctx, title: "Problems", nav: :problems, body: body)
      end

      def delayed_page(ctx, page, count)
        rows = page.rows.map do |d|
          <<~ROW
            <tr><td data-label="Job id">#{h(d[:job_id])}</td><td data-label="Runs at">#{time(Time.at(Rational(d[:run_at_ms], 1000)).utc)}</td>
            <td data-label="Class">#{h(d[:job_class])}</td><td data-label="Queue">#{h(d[:queue] || "—")}</td>
            #{ctx.read_only ? "" : %(<td class="actions">#{post_button(ctx, "/delayed/#{u(d[:job_id])}/cancel", "Cancel", cls: "danger")}</td>)}</tr>
          ROW
        end.join
        rows = %(<tr><td colspan="5" class="empty">No pending delayed jobs.</td></tr>) if page.rows.empty?
        body = <<~HTML
          <div class="heading"><h1>Delayed jobs</h1><span class="count">#{count} pending</span></div>
          <div class="table-wrap"><table><thead><tr><th>Job id</th><th>Runs at</th><th>Class</th><th>Queue</th>#{ctx.read_only ? "" : "<th></th>"}</tr></thead>
          <tbody>#{rows}</tbody></table></div>
          #{delayed_pager(ctx, page)}
        HTML
        layout(ctx, title: "Delayed jobs", nav: :delayed, body: body)
      end

      # Stored schedules (Kaal.schedules): where each comes from, whether
      # it is enabled there and whether it is paused, shown apart.
      def schedules_page(ctx, page, count)
        rows = page.rows.map do |s|
          job = s.merge(source_enabled: s[:enabled])
          nexts = s[:next_fire_times].map { |t| "<li>#{time(t)}</li>" }.join
          actions = if ctx.read_only || !s[:enabled] then ""
                    elsif s[:paused] then post_button(ctx, "/jobs/#{u(s[:key])}/resume", "Resume", cls: "primary")
                    else post_button(ctx, "/jobs/#{u(s[:key])}/pause", "Pause")
                    end
          actions += post_button(ctx, "/jobs/#{u(s[:key])}/run", "Run now", cls: "ghost")
          <<~ROW
            <tr#{' class="paused"' if s[:paused] || !s[:enabled]}>
            <td data-label="Job"><span class="key">#{h(s[:key])}</span><small>#{h(s[:job_class])}#{s[:queue] ? " · #{h(s[:queue])}" : ""}</small></td>
            <td data-label="Schedule"><code>#{h(s[:cron])}</code><small>#{h(s[:explanation])}</small></td>
            <td data-label="Zone">#{h(s[:time_zone] || Kaal.configuration.time_zone)}</td>
            <td data-label="Next"><ul class="times">#{nexts}</ul></td>
            <td data-label="Source"><span class="tag">stored</span><small>changed #{time(s[:updated_at])}</small></td>
            <td data-label="State" class="state">#{state_cell(job)}</td>
            #{ctx.read_only ? "" : %(<td data-label="" class="actions">#{actions}</td>)}
            </tr>
          ROW
        end.join
        rows = %(<tr><td colspan="7" class="empty">No stored schedules (Kaal.schedules.upsert, kaal schedules add).</td></tr>) if page.rows.empty?
        more = if page.more
                 %(<a href="#{h(ctx.base)}/schedules?after=#{h(u(page.rows.last[:key]))}" rel="next">Next →</a>)
               else
                 %(<span class="disabled">Next →</span>)
               end
        first = page.before ? %(<a href="#{h(ctx.base)}/schedules">← First</a>) : %(<span class="disabled">← First</span>)
        pager = page.before.nil? && !page.more ? "" : %(<nav class="pager">#{first}#{more}</nav>)
        body = <<~HTML
          <div class="heading"><h1>Stored schedules</h1><span class="count">#{count} stored</span></div>
          <div class="table-wrap"><table class="jobs">
          <thead><tr><th>Job</th><th>Schedule</th><th>Zone</th><th>Next fire times</th><th>Source</th><th>State</th>#{ctx.read_only ? "" : "<th></th>"}</tr></thead>
          <tbody>#{rows}</tbody></table></div>
          #{pager}
        HTML
        layout(ctx, title: "Stored schedules", nav: :schedules, body: body)
      end

      def error_page(ctx, status, message)
        body = %(<div class="heading"><h1>#{status}</h1></div><p class="notice bad">#{h(message)}</p>)
        layout(ctx, title: status.to_s, nav: nil, body: body)
      end
    end
  end
end

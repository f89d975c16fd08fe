# frozen_string_literal: true

module Kaal
  class Web
    # The stylesheet, inlined in every page (no asset requests). Narrow
    # screens (phones) get one card per row with the column names as labels.
    STYLE = <<~CSS.freeze
      :root{--bg:#f6f7f9;--card:#fff;--ink:#1c2330;--soft:#5b6575;--line:#e3e6eb;--accent:#3b5bdb;--ok:#2b8a3e;--okbg:#e6f4ea;--bad:#c92a2a;--badbg:#fdecec;--warn:#a6620b;--warnbg:#fff4e0}
      *{box-sizing:border-box}
      body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
      a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
      .top{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem 1.5rem;padding:.7rem 1.5rem;background:#1c2330;color:#cfd5df}
      .brand{color:#fff;font-weight:700;font-size:1.15rem;letter-spacing:.02em}
      .top nav{display:flex;gap:.25rem;flex-wrap:wrap}
      .top nav a{color:#cfd5df;padding:.3rem .7rem;border-radius:6px}
      .top nav a[aria-current]{background:#2f3a4d;color:#fff}
      .top .meta{margin-left:auto;font-size:.85rem;color:#9aa4b5}
      main{max-width:1280px;margin:0 auto;padding:1.25rem 1.5rem}
      footer{max-width:1280px;margin:0 auto;padding:0 1.5rem 2rem;color:var(--soft);font-size:.8rem}
      .heading{display:flex;align-items:center;gap:1rem;flex-wrap:wrap;margin:.25rem 0 1rem}
      h1{font-size:1.45rem;margin:0}h2{font-size:1.05rem;margin:1.5rem 0 .5rem}
      .count{color:var(--soft);font-size:.9rem;font-weight:400}
      .table-wrap{background:var(--card);border:1px solid var(--line);border-radius:10px;overflow-x:auto}
      table{width:100%;border-collapse:collapse}
      th{text-align:left;font-size:.75rem;text-transform:uppercase;letter-spacing:.04em;color:var(--soft);font-weight:600;padding:.6rem .8rem;border-bottom:1px solid var(--line);background:#fafbfc}
      td{padding:.6rem .8rem;border-bottom:1px solid var(--line);vertical-align:top}
      tbody tr:last-child td{border-bottom:0}
      tr.paused td{background:#fbfbfc}tr.paused .key{color:var(--soft)}
      td small,dd small{display:block;color:var(--soft);font-size:.8rem}
      .key{font-weight:600;overflow-wrap:anywhere}
      table.jobs td:first-child{min-width:11rem}
      code{white-space:nowrap}
      code{font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#eef1f5;padding:.1rem .35rem;border-radius:4px}
      .times{list-style:none;margin:0;padding:0;font-variant-numeric:tabular-nums;white-space:nowrap}
      .times li+li{color:var(--soft);font-size:.85rem}
      .badge{display:inline-block;padding:.05rem .5rem;border-radius:999px;font-size:.78rem;font-weight:600;background:#eef1f5;color:var(--soft)}
      .badge.ok{background:var(--okbg);color:var(--ok)}.badge.bad{background:var(--badbg);color:var(--bad)}.badge.warn{background:var(--warnbg);color:var(--warn)}
      .tag{font-size:.72rem;color:var(--accent);border:1px solid #c5d0f5;border-radius:4px;padding:0 .3rem}.tag.sched{color:var(--soft);border-color:var(--line)}
      .actions{white-space:nowrap;text-align:right}
      form.inline{display:inline}
      button{font:inherit;font-size:.82rem;padding:.3rem .75rem;border-radius:6px;border:1px solid #c8ced8;background:#fff;color:var(--ink);cursor:pointer;margin-left:.3rem}
      button:hover{border-color:var(--accent);color:var(--accent)}
      button.primary{background:var(--accent);border-color:var(--accent);color:#fff}
      button.ghost{color:var(--accent)}button.danger{color:var(--bad)}
      .notice{padding:.6rem .9rem;border-radius:8px;background:var(--okbg);color:var(--ok);margin:0 0 1rem}
      .notice.bad{background:var(--badbg);color:var(--bad)}
      .hint{color:var(--soft);margin:.25rem 0 .6rem}
      .empty{color:var(--soft);text-align:center;padding:1.5rem}
      .error{color:var(--bad);max-width:28rem;word-break:break-word}
      .muted{color:var(--soft)}
      .pager{display:flex;gap:1rem;justify-content:center;align-items:center;margin:1rem 0;color:var(--soft)}
      .pager .disabled{opacity:.5}
      dl.facts{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:.75rem;margin:0 0 1rem}
      dl.facts div{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:.7rem .9rem}
      dl.facts .times{white-space:normal}
      @media (min-width:761px){table.log td{white-space:nowrap}table.log td.error{white-space:normal}}
      dt{font-size:.75rem;text-transform:uppercase;letter-spacing:.04em;color:var(--soft)}dd{margin:.2rem 0 0}
      @media (max-width:760px){
       .top{padding:.6rem 1rem}.top .meta{margin-left:0;width:100%}main{padding:1rem}
       .table-wrap{background:none;border:0}
       table,tbody,tr,td{display:block;width:100%}thead{display:none}
       tr{background:var(--card);border:1px solid var(--line);border-radius:10px;margin-bottom:.75rem;padding:.4rem 0}
       td{border:0;padding:.3rem .9rem .3rem 7.6rem;position:relative;min-height:1.9rem}
       td::before{content:attr(data-label);position:absolute;left:.9rem;top:.4rem;width:6.2rem;color:var(--soft);font-size:.72rem;text-transform:uppercase;letter-spacing:.03em}
       td.empty{padding-left:.9rem}.actions{text-align:left}
       table.jobs td:first-child{min-width:0}
      }
    CSS
  end
end

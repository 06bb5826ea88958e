/**
 * The report's own CSS and script, inlined into the page. The script only reads `data-*`
 * attributes: clicking the timeline (or an event row) scrolls the serial log to that time and
 * shows a cursor; clicking a serial line moves the cursor to it. It builds no markup from text.
 */

/** The page's stylesheet. */
export const REPORT_CSS = `
:root { color-scheme: light; --fg: #1d2430; --dim: #6b7687; --line: #d9dee7; }
body { font: 14px/1.4 system-ui, sans-serif; color: var(--fg); margin: 0 1.5rem 2rem; }
h1 { font-size: 1.3rem; margin: 1rem 0 0.2rem; }
.meta { color: var(--dim); margin: 0 0 0.6rem; }
.notes { background: #fff7e0; border: 1px solid #f0d48a; padding: 0.4rem 0.8rem; margin: 0.5rem 0; }
.plot { position: sticky; top: 0; background: #fff; border-bottom: 1px solid var(--line); z-index: 1; }
#timeline { width: 100%; height: auto; display: block; cursor: crosshair; }
#timeline .hit { fill: transparent; }
#timeline .grid { stroke: var(--line); stroke-width: 1; }
#timeline .base { stroke: var(--line); }
#timeline .tick { font-size: 11px; fill: var(--dim); text-anchor: middle; }
#timeline .lbl { font-size: 12px; fill: var(--fg); }
#timeline .dim { fill: var(--dim); font-size: 11px; }
#timeline .lease { fill: #c9d7f2; stroke: #5b7fc7; }
#timeline .p-on { fill: #59b36b; }
#timeline .p-off { fill: #c4c9d1; }
#timeline .p-unknown { fill: #eef0f3; stroke: #c4c9d1; stroke-dasharray: 3 2; }
#timeline .flash-curve { fill: none; stroke: #8a4fd1; stroke-width: 2; }
#timeline .flash-pt { fill: #8a4fd1; }
#timeline .flash-mark { stroke: #8a4fd1; stroke-dasharray: 2 2; stroke-width: 1.5; }
#timeline .flash-mark.f-failed { stroke: #d1453b; }
#timeline .job { stroke: rgba(0, 0, 0, 0.25); }
#timeline .o-succeeded { fill: #59b36b; }
#timeline .o-failed { fill: #d1453b; }
#timeline .o-stopped { fill: #e69a2e; }
#timeline .o-running { fill: #4a8fe0; }
#timeline .mark { stroke: #fff; stroke-width: 1; }
#timeline .m-expect.ok { fill: #2e8b57; }
#timeline .m-expect.bad { fill: #d1453b; }
#timeline .m-lease { fill: #2f5fb3; }
#timeline .m-health { fill: #e69a2e; }
#timeline .m-serial { fill: #6b7687; }
#timeline .m-exec { fill: #7a4fb3; }
#timeline .m-state { fill: #2a9d8f; }
#timeline .cursor { stroke: #d1453b; stroke-width: 1.5; pointer-events: none; }
#timeline [data-t] { cursor: pointer; }
h2 { font-size: 1.05rem; margin: 1.2rem 0 0.4rem; }
#serial { font: 12px/1.35 ui-monospace, monospace; max-height: 60vh; overflow: auto; border: 1px solid var(--line); background: #fbfcfd; }
#serial .sl { white-space: pre-wrap; word-break: break-all; padding: 0 0.5rem; content-visibility: auto; contain-intrinsic-size: auto 16px; cursor: pointer; }
#serial .sl time { color: var(--dim); margin-right: 0.8rem; user-select: none; }
#serial .ev { color: #8a5a00; font-style: italic; }
#serial .here { background: #ffe9a8; }
#events { border-collapse: collapse; font-size: 13px; }
#events td { padding: 0.1rem 0.6rem 0.1rem 0; vertical-align: top; }
#events tr { cursor: pointer; }
#events .k { color: var(--dim); }
.empty { color: var(--dim); }
`;

/** The page's script. */
export const REPORT_JS = `
(function () {
  'use strict';
  var svg = document.getElementById('timeline');
  var log = document.getElementById('serial');
  var cursor = document.getElementById('cursor');
  if (!svg) return;
  var from = Number(svg.dataset.from), to = Number(svg.dataset.to);
  var x0 = Number(svg.dataset.x0), x1 = Number(svg.dataset.x1);
  var rows = log ? Array.prototype.slice.call(log.querySelectorAll('.sl')) : [];
  var times = rows.map(function (r) { return Number(r.dataset.t); });
  var lit = null;

  function timeAt(evt) {
    var pt = svg.createSVGPoint();
    pt.x = evt.clientX; pt.y = evt.clientY;
    var p = pt.matrixTransform(svg.getScreenCTM().inverse());
    var f = Math.min(1, Math.max(0, (p.x - x0) / (x1 - x0)));
    return from + f * (to - from);
  }
  function showCursor(t) {
    var x = x0 + (Math.min(to, Math.max(from, t)) - from) / Math.max(1, to - from) * (x1 - x0);
    cursor.setAttribute('x1', x); cursor.setAttribute('x2', x);
    cursor.setAttribute('visibility', 'visible');
  }
  function scrollLogTo(t) {
    if (!rows.length) return;
    var lo = 0, hi = times.length;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (times[mid] < t) lo = mid + 1; else hi = mid; }
    var row = rows[Math.min(lo, rows.length - 1)];
    if (lit) lit.classList.remove('here');
    row.classList.add('here'); lit = row;
    log.scrollTop = row.offsetTop - log.offsetTop - log.clientHeight / 3;
  }
  function go(t) { showCursor(t); scrollLogTo(t); }

  svg.addEventListener('click', function (evt) {
    var hit = evt.target.closest('[data-t]');
    go(hit && hit !== svg ? Number(hit.dataset.t) : timeAt(evt));
  });
  var events = document.getElementById('events');
  if (events) events.addEventListener('click', function (evt) {
    var row = evt.target.closest('tr[data-t]');
    if (row) go(Number(row.dataset.t));
  });
  if (log) log.addEventListener('click', function (evt) {
    var row = evt.target.closest('.sl');
    if (!row) return;
    if (lit) lit.classList.remove('here');
    row.classList.add('here'); lit = row;
    showCursor(Number(row.dataset.t));
  });
})();
`;

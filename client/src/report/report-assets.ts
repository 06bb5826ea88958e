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
svg .lease { fill: #c9d7f2; stroke: #5b7fc7; }
svg .p-on { fill: #59b36b; }
svg .p-off { fill: #c4c9d1; }
svg .p-unknown { fill: #eef0f3; stroke: #c4c9d1; stroke-dasharray: 3 2; }
svg .flash-curve { fill: none; stroke: #8a4fd1; stroke-width: 2; }
#timeline .flash-pt { fill: #8a4fd1; }
svg .flash-mark { stroke: #8a4fd1; stroke-dasharray: 2 2; stroke-width: 1.5; }
svg .flash-mark.f-failed { stroke: #d1453b; }
svg .job { stroke: rgba(0, 0, 0, 0.25); }
svg .o-succeeded { fill: #59b36b; }
svg .o-failed { fill: #d1453b; }
svg .o-stopped { fill: #e69a2e; }
svg .o-running { fill: #4a8fe0; }
svg .mark { stroke: #fff; stroke-width: 1; }
svg .case { stroke: rgba(0, 0, 0, 0.25); }
svg .m-expect.ok { fill: #2e8b57; }
svg .m-expect.bad { fill: #d1453b; }
svg .m-lease { fill: #2f5fb3; }
svg .m-health { fill: #e69a2e; }
svg .m-serial { fill: #6b7687; }
svg .m-exec { fill: #7a4fb3; }
svg .m-state { fill: #2a9d8f; }
svg .s-passed { fill: #59b36b; }
svg .s-failed, svg .s-error { fill: #d1453b; }
svg .s-skipped { fill: #c4c9d1; }
.legend { list-style: none; display: flex; flex-wrap: wrap; gap: 0.2rem 1rem; margin: 0.2rem 0 0.4rem; padding: 0; font-size: 12px; color: var(--dim); }
.legend li { display: flex; align-items: center; gap: 0.3rem; }
.legend .sw { width: 16px; height: 12px; }
.verdict { margin: 1rem 0 0; padding: 0.5rem 0.8rem; border-radius: 4px; font-size: 1.05rem; color: #fff; }
.verdict strong { margin-right: 0.6rem; letter-spacing: 0.03em; }
.v-pass { background: #2e8b57; }
.v-fail { background: #c0392b; }
.v-infra-error { background: #8a4fd1; }
.v-timeout { background: #d9822b; }
.v-cancelled { background: #6b7687; }
.failed-job { border-left: 3px solid #d1453b; padding: 0 0.6rem; margin: 0.4rem 0; cursor: pointer; }
.failed-job p { margin: 0.2rem 0; }
.failed-job .dim { color: var(--dim); }
.tail { font: 12px/1.35 ui-monospace, monospace; background: #fbf3f2; border: 1px solid #f0c9c5; padding: 0.3rem 0.5rem; margin: 0.2rem 0 0.5rem; white-space: pre-wrap; word-break: break-all; max-height: 20em; overflow: auto; }
#cases { border-collapse: collapse; font-size: 13px; }
#cases td { padding: 0.1rem 0.6rem 0.1rem 0; vertical-align: top; }
#cases tr { cursor: pointer; }
#cases .s-failed .st, #cases .s-error .st { color: #c0392b; font-weight: 600; }
#cases .s-passed .st { color: #2e8b57; }
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
  ['events', 'cases', 'failed-jobs'].forEach(function (id) {
    var list = document.getElementById(id);
    if (list) list.addEventListener('click', function (evt) {
      var row = evt.target.closest('[data-t]');
      if (row) go(Number(row.dataset.t));
    });
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

/**
 * The report's lists below the timeline: every event in time order, and the serial log with one
 * row per line. Rows carry `data-kind` and `data-t` like the timeline's shapes, so the page's
 * script can scroll to a time and a browser test can find them. All text is escaped here.
 */
import { clock, html, printable } from './html-text.js';
import type { ReportModel } from './report-model.js';

/** The event table; empty when nothing was recorded. */
export function eventList(m: ReportModel): string {
  if (m.events.length === 0) return '<p class="empty">No events were recorded in this span.</p>';
  const rows = m.events.map(
    (e) =>
      `<tr data-kind="${e.kind}" data-t="${e.at}"><td>${clock(e.at)}</td><td class="k">${e.kind}</td><td>${html(printable(e.summary))}</td></tr>`,
  );
  return `<table id="events">\n${rows.join('\n')}\n</table>`;
}

/** The serial log, one row per line (capture events in italics); says so when it was cut. */
export function serialLog(m: ReportModel): string {
  const out: string[] = [];
  if (m.serial.length === 0) out.push('<p class="empty">No serial lines in this span.</p>');
  else {
    out.push('<div id="serial">');
    for (const s of m.serial) {
      const cls = s.event ? 'sl ev' : 'sl';
      out.push(
        `<div class="${cls}" data-kind="serial" data-t="${s.at}" data-offset="${html(s.offset)}" data-capture="${html(s.capture)}"><time>${clock(s.at)}</time>${html(printable(s.text))}</div>`,
      );
    }
    out.push('</div>');
  }
  if (m.serialTruncated)
    out.push(
      '<p class="notes">The serial log was cut at its size bound; jigctl serial tail reads the rest.</p>',
    );
  return out.join('\n');
}

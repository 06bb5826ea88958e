/**
 * The parts of the report around the timeline: the run's verdict at the top, the legend of the
 * timeline's colours and shapes, the test cases as a table, and the stderr tails of the jobs that
 * failed. All text is escaped here; rows with `data-t` scroll the serial log when clicked.
 */
import { clock, duration, html, printable } from './html-text.js';
import type { ReportModel } from './report-model.js';

/** A failed job's name is cut to this many characters (its full command is its tooltip). */
const MAX_NAME_CHARS = 160;

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** How a run ended, as the queue and `claim --exec` decide it (issue 14). */
export type VerdictName = 'pass' | 'fail' | 'infra-error' | 'timeout' | 'cancelled';

/** A run's verdict with its reason and the step that failed. */
export interface ReportVerdict {
  verdict: VerdictName;
  reason?: string;
  step?: string;
}

const VERDICT_WORDS: Record<VerdictName, string> = {
  pass: 'PASS',
  fail: 'FAIL',
  'infra-error': 'INFRA ERROR',
  timeout: 'TIMEOUT',
  cancelled: 'CANCELLED',
};

/** The verdict banner; '' without one. */
export function verdictBanner(v: ReportVerdict | undefined): string {
  if (!v) return '';
  const parts = [v.reason, v.step ? `step: ${v.step}` : undefined].filter(Boolean) as string[];
  return `<div id="verdict" class="verdict v-${v.verdict}" data-verdict="${v.verdict}"><strong>${VERDICT_WORDS[v.verdict]}</strong>${parts.map((p) => ` <span>${html(printable(p))}</span>`).join(' ·')}</div>`;
}

/** A legend entry: a small SVG shape with the timeline's class, and what it means. */
function swatch(shape: string, text: string, kind: string): string {
  return `<li data-legend="${kind}"><svg class="sw" viewBox="0 0 16 12" aria-hidden="true">${shape}</svg>${html(text)}</li>`;
}

const rect = (cls: string): string => `<rect x="1" y="1" width="14" height="10" class="${cls}"/>`;

/** The legend of everything the timeline draws. */
export function legend(m: ReportModel): string {
  const items = [
    swatch(rect('lease'), 'lease held', 'lease'),
    swatch(rect('p-on'), 'power on', 'power-on'),
    swatch(rect('p-off'), 'power off', 'power-off'),
    swatch(rect('p-unknown'), 'power unknown', 'power-unknown'),
    swatch('<polyline points="1,10 6,4 10,6 15,2" class="flash-curve"/>', 'flash MB/s', 'flash'),
    swatch(rect('job o-succeeded'), 'job succeeded', 'job-succeeded'),
    swatch(rect('job o-failed'), 'job failed', 'job-failed'),
    swatch(rect('job o-stopped'), 'job stopped', 'job-stopped'),
    swatch(rect('job o-running'), 'job running', 'job-running'),
    ...(m.cases.length > 0
      ? [
          swatch(rect('case s-passed'), 'test passed', 'case-passed'),
          swatch(rect('case s-failed'), 'test failed / error', 'case-failed'),
          swatch(rect('case s-skipped'), 'test skipped', 'case-skipped'),
        ]
      : []),
    swatch('<polygon points="8,0 14,6 8,12 2,6" class="mark m-expect ok"/>', 'expect matched', 'expect-ok'),
    swatch(
      '<polygon points="8,0 14,6 8,12 2,6" class="mark m-expect bad"/>',
      'expect timed out',
      'expect-bad',
    ),
    swatch('<polygon points="2,1 14,1 8,10" class="mark m-lease"/>', 'lease change', 'lease-change'),
    swatch('<circle cx="8" cy="6" r="5" class="mark m-health"/>', 'health', 'health'),
    swatch('<rect x="4" y="2" width="8" height="8" class="mark m-serial"/>', 'serial port event', 'serial'),
    swatch('<rect x="4" y="2" width="8" height="8" class="mark m-exec"/>', 'exec on the DUT', 'exec'),
    swatch('<rect x="4" y="2" width="8" height="8" class="mark m-state"/>', 'DUT state step', 'state'),
  ];
  return `<ul id="legend" class="legend">${items.join('')}</ul>`;
}

/** The test cases as a table (failed ones first is the CI's job; file order here). */
export function caseTable(m: ReportModel): string {
  if (m.cases.length === 0) return '';
  const rows = m.cases.map(
    (c) =>
      `<tr class="s-${c.status}" data-kind="testcase" data-status="${c.status}" data-t="${c.from}"><td>${clock(c.from)}</td><td class="st">${c.status}</td><td>${html(printable(c.suite))}</td><td>${html(printable(c.name))}</td><td>${duration(c.durationMs)}</td><td>${html(printable(c.message.split('\n')[0] ?? ''))}</td></tr>`,
  );
  return `<h2>Test cases</h2>\n<table id="cases">\n${rows.join('\n')}\n</table>`;
}

/** The end of each failed job's stderr, so the reason is on the page. */
export function failedJobs(m: ReportModel): string {
  const failed = m.jobs.filter((j) => j.outcome === 'failed' || j.outcome === 'stopped');
  if (failed.length === 0) return '';
  const items = failed.map(
    (j) =>
      `<div class="failed-job" data-kind="job" data-job="${html(j.id)}" data-t="${j.to}"><p><strong title="${html(printable(j.command))}">${html(printable(clip(j.label, MAX_NAME_CHARS)))}</strong> — ${html(printable(j.detail || j.state))} <span class="dim">(job ${html(j.id)}, ${clock(j.to)})</span></p>${j.stderrTail ? `<pre class="tail">${html(printable(j.stderrTail))}</pre>` : '<p class="empty">It wrote nothing to stderr.</p>'}</div>`,
  );
  return `<h2>Failed jobs</h2>\n<div id="failed-jobs">\n${items.join('\n')}\n</div>`;
}

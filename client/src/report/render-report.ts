/**
 * One self-contained HTML file from a timeline: inline CSS and script, SVG drawn here, no URL of
 * any kind, so it opens offline and from a CI artifact store. Its Content-Security-Policy allows
 * nothing but the page's own style and script, named by their SHA-256: even a line of serial
 * output that escaped escaping could neither run script nor load anything.
 */
import { createHash } from 'node:crypto';
import { JobRole, type GetTimelineResponse as Timeline } from '../../../protocol/gen/jiglet/v1/records.js';
import type { TestCase } from '../../../protocol/src/test-cases.js';
import { duration, html, printable } from './html-text.js';
import { REPORT_CSS, REPORT_JS } from './report-assets.js';
import { eventList, serialLog } from './report-lists.js';
import { reportModel, type TestCaseRun } from './report-model.js';
import { caseTable, failedJobs, legend, type ReportVerdict, verdictBanner } from './report-sections.js';
import { timelineSvg } from './timeline-svg.js';

/** What the page says about where the timeline came from. */
export interface ReportOptions {
  /** A heading above the timeline (default: the lease or job and its DUT). */
  title?: string;
  /** The agent it came from, for the header. */
  agent?: string;
  /** When the report was made (default now). */
  now?: number;
  /** The run's verdict, shown at the top (the queue worker passes its attempt's). */
  verdict?: ReportVerdict;
  /** Test cases of the run, drawn as spans back to back from `testCasesFrom`. */
  testCases?: readonly TestCase[];
  /** When the cases began (epoch ms); default the start of the timeline's last command job. */
  testCasesFrom?: number;
  /** Cases of several runs, each from its own start (`jigctl report`: each command job's). */
  testCaseRuns?: readonly TestCaseRun[];
}

/** The start of the last command (user) job in the timeline, else the timeline's start. */
function lastCommandStart(timeline: Timeline): number | undefined {
  const commands = timeline.jobs.filter((j) => j.role === JobRole.JOB_ROLE_COMMAND || j.role === 0);
  const last = commands.at(-1);
  return (last?.started ?? last?.created ?? timeline.from)?.getTime();
}

function sha256(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
}

/** The HTML page of a timeline. */
export function renderReport(timeline: Timeline, opts: ReportOptions = {}): string {
  const now = opts.now ?? Date.now();
  const runs: TestCaseRun[] = [...(opts.testCaseRuns ?? [])];
  if (opts.testCases && opts.testCases.length > 0)
    runs.push({ from: opts.testCasesFrom ?? lastCommandStart(timeline) ?? now, cases: opts.testCases });
  const m = reportModel(timeline, now, runs);
  const title = opts.title ?? `${m.subject}${m.dut ? ` on ${m.dut}` : ''}`;
  const csp = [
    "default-src 'none'",
    `style-src ${sha256(REPORT_CSS)}`,
    `script-src ${sha256(REPORT_JS)}`,
    "base-uri 'none'",
    "form-action 'none'",
  ].join('; ');
  const meta = [
    m.dut ? `DUT ${m.dut}` : 'no DUT',
    `${new Date(m.from).toISOString()} → ${new Date(m.to).toISOString()} (${duration(m.to - m.from)}${m.ongoing ? ', still running' : ''})`,
    ...(opts.agent ? [`agent ${opts.agent}`] : []),
    `made ${new Date(now).toISOString()}; times are UTC`,
  ];
  const notes = m.notes.length
    ? `<div class="notes">${m.notes.map((n) => `<p>${html(printable(n))}</p>`).join('')}</div>`
    : '';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${html(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${html(printable(`jiglet report: ${title}`))}</title>
<style>${REPORT_CSS}</style>
</head>
<body>
${verdictBanner(opts.verdict)}
<h1>${html(printable(title))}</h1>
<p class="meta">${meta.map((s) => html(printable(s))).join(' · ')}</p>
${notes}
<div class="plot">
${timelineSvg(m)}
${legend(m)}
</div>
${failedJobs(m)}
<h2>Serial log</h2>
${serialLog(m)}
${caseTable(m)}
<h2>Events</h2>
${eventList(m)}
<script>${REPORT_JS}</script>
</body>
</html>
`;
}

/**
 * What the report adds for a test run, checked on the page text (the browser test clicks it):
 * the verdict's words and reason, cases laid out back to back from their job's start, and text
 * from the run (a reason, a case name, a stderr line) shown as text, never as markup.
 */
import assert from 'node:assert/strict';
import { renderReport } from '../../client/src/report/render-report.js';
import { GetTimelineResponse, JobRole } from '../../protocol/gen/jiglet/v1/records.js';

const EVIL = '<script>alert(1)</script>';
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);

const timeline = GetTimelineResponse.fromPartial({
  jobId: 'job-1',
  dut: 'vdut-a',
  from: new Date(T0),
  to: new Date(T0 + 10_000),
  jobs: [
    {
      jobId: 'job-1',
      owner: 'ci',
      command: 'sh -c ./test.sh',
      name: 'sh -c ./test.sh',
      role: JobRole.JOB_ROLE_COMMAND,
      state: 'exited',
      exitCode: 1,
      stderrTail: `collecting\n${EVIL}`,
      created: new Date(T0 + 1000),
      started: new Date(T0 + 2000),
      ended: new Date(T0 + 6000),
    },
  ],
});

describe('the report of a test run', () => {
  const page = renderReport(timeline, {
    now: T0 + 20_000,
    verdict: { verdict: 'infra-error', reason: `flash failed ${EVIL}`, step: 'flash' },
    testCases: [
      { suite: 's', name: 'first', status: 'passed', durationMs: 1500, message: '' },
      { suite: 's', name: EVIL, status: 'failed', durationMs: 500, message: EVIL },
    ],
  });

  it('states the verdict, its reason and step at the top, escaped', () => {
    assert.match(
      page,
      /<div id="verdict" class="verdict v-infra-error" data-verdict="infra-error"><strong>INFRA ERROR<\/strong> <span>flash failed &lt;script&gt;/,
    );
    assert.match(page, /step: flash/);
    assert.ok(page.indexOf('id="verdict"') < page.indexOf('<h1>'), 'above the title');
  });

  it("lays the cases out back to back from the command job's start", () => {
    const starts = [
      ...page.matchAll(/<rect [^>]*data-kind="testcase" data-status="(\w+)" data-t="(\d+)"/g),
    ].map((m) => [m[1], Number(m[2])]);
    assert.deepEqual(starts, [
      ['passed', T0 + 2000],
      ['failed', T0 + 3500],
    ]);
  });

  it('never lets run text become markup', () => {
    assert.equal(page.match(/<script>/g)?.length, 1, "only the page's own script");
    assert.match(page, /<pre class="tail">collecting\n&lt;script&gt;alert\(1\)&lt;\/script&gt;<\/pre>/);
  });

  it('leaves the verdict, the case lane and the failed-jobs list out when there is nothing to show', () => {
    const plain = renderReport(
      GetTimelineResponse.fromPartial({ jobId: 'j', from: new Date(T0), to: new Date(T0) }),
    );
    assert.doesNotMatch(plain, /id="verdict"|data-kind="testcase"|id="failed-jobs"|id="cases"/);
    assert.match(plain, /id="legend"/, 'the legend is always there');
  });
});

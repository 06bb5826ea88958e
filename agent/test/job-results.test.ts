/**
 * A user's job reports test cases by writing JUnit XML to $JIGLET_RESULTS: the agent reads them
 * when the job ends and its final record carries them. A file that is not JUnit is reported and
 * costs nothing else; a link out of the folder is refused; a failed job's record carries the end
 * of its stderr. One agent for the file; its jobs run as their owner's own uid (root default).
 */
import assert from 'node:assert/strict';
import { testCasesOf } from '../../client/src/job-test-cases.js';
import { collect } from '../../fixtures/test-support/collect.js';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';
import { JobState } from '../../protocol/gen/jiglet/v1/jobs.js';

const JUNIT = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="boot" tests="2" failures="1">
    <testcase classname="boot" name="reaches a shell" time="1.5"/>
    <testcase classname="boot" name="mounts data" time="0.25">
      <failure message="/data is not mounted">expected /data in /proc/mounts</failure>
    </testcase>
  </testsuite>
</testsuites>
`;

describe('test-case results ($JIGLET_RESULTS)', function () {
  this.timeout(60_000);
  let t: TestAgent;

  before(async () => {
    t = await startTestAgent();
  });
  after(async () => {
    await t?.stop();
  });

  /** Runs a shell script as a job of `operator` and returns its final record. */
  async function run(script: string, env: Record<string, string> = {}) {
    const client = t.client('operator');
    const job = await client.start({ command: 'sh', args: ['-c', script], env });
    const { finished } = await collect(client, job.id, { follow: true });
    assert.ok(finished, 'the stream ends with the final record');
    return finished;
  }

  it("keeps a job's passing and failing cases and reports a garbage file without losing them", async () => {
    const job = await run(
      'printf "%s" "$XML" > "$JIGLET_RESULTS/boot.xml" && echo "not xml at all" > "$JIGLET_RESULTS/garbage.xml"',
      { XML: JUNIT },
    );
    assert.equal(job.state, JobState.JOB_STATE_EXITED);
    assert.equal(job.exitCode, 0, 'a garbage results file does not fail the job');
    assert.deepEqual(testCasesOf(job), [
      { suite: 'boot', name: 'reaches a shell', status: 'passed', durationMs: 1500, message: '' },
      {
        suite: 'boot',
        name: 'mounts data',
        status: 'failed',
        durationMs: 250,
        message: '/data is not mounted',
      },
    ]);
    assert.match(job.resultsError, /garbage\.xml/);
    assert.match(job.resultsError, /not JUnit|not well-formed/);

    // GetJob later reads the same record (from disk once it leaves the recent set).
    const again = await t.client('operator').get(job.id);
    assert.equal(testCasesOf(again).length, 2);
  });

  it('gives a job without results no cases and no error', async () => {
    const job = await run('test -d "$JIGLET_RESULTS" && test -w "$JIGLET_RESULTS"');
    assert.equal(job.exitCode, 0, 'every user job gets an empty folder it may write to');
    assert.deepEqual(job.testCases, []);
    assert.equal(job.resultsError, '');
  });

  it('keeps a bounded number of cases and says how many were left out', async () => {
    const job = await run(
      `awk 'BEGIN { printf "<testsuites><testsuite name=\\"many\\">"; for (i = 0; i < 12000; i++) printf "<testcase name=\\"case %d of a suite whose names are long enough to reach the bound of a record\\" time=\\"0.001\\"/>", i; print "</testsuite></testsuites>" }' > "$JIGLET_RESULTS/many.xml"`,
    );
    assert.equal(job.exitCode, 0);
    assert.ok(job.testCases.length > 1000 && job.testCases.length <= 10_000, `${job.testCases.length} kept`);
    assert.match(job.testCases[0]?.name ?? '', /^case 0 of/, 'the first cases are the ones kept');
    assert.match(job.resultsError, /\d+ test cases were left out: \d+ are kept/);
  });

  it("refuses a link out of the results folder, and keeps a failed job's stderr tail", async () => {
    const job = await run(
      'ln -s /etc/passwd "$JIGLET_RESULTS/passwd.xml"; for i in $(seq 1 50); do echo "line $i" >&2; done; exit 3',
    );
    assert.equal(job.exitCode, 3);
    assert.deepEqual(job.testCases, []);
    assert.match(job.resultsError, /passwd\.xml: is a symbolic link/);
    const tail = job.stderrTail.split('\n');
    assert.equal(tail.length, 20, 'the last 20 lines');
    assert.equal(tail.at(-1), 'line 50');
    assert.equal(tail[0], 'line 31');
  });
});

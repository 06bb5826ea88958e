/**
 * Test-case summaries as a CI log shows them: `jigctl claim --exec` gives its command a
 * $JIGLET_RESULTS folder and, after it exits, prints what the JUnit files there say (keeping the
 * command's exit code); `jigctl run` prints the same from the job's final record.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runJigctl } from '../../fixtures/test-support/run-jigctl.js';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';
import { parseJigDescription } from '../../jig-drivers/src/jig-description.js';

const JUNIT =
  '<testsuites><testsuite name="smoke">' +
  '<testcase name="boots" time="0.5"/>' +
  '<testcase name="has network" time="1"><failure message="eth0 has no address"/></testcase>' +
  '</testsuite></testsuites>';

/** A shell script that writes JUNIT to $JIGLET_RESULTS and exits with `code`. */
const writesResults = (code: number): string =>
  `echo "JIGLET_RESULTS=$JIGLET_RESULTS"; printf '%s' '${JUNIT}' > "$JIGLET_RESULTS/smoke.xml"; exit ${code}`;

describe('jigctl test-case summaries', function () {
  this.timeout(60_000);
  let t: TestAgent;
  let work: string;
  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'jigctl-results-test-'));
    const jig = parseJigDescription(
      JSON.stringify({ duts: [{ name: 'rdut', power: { driver: 'command', on: 'true', off: 'true' } }] }),
      'lab.yaml',
    );
    t = await startTestAgent({ jig });
  });
  after(async () => {
    await t?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('claim --exec summarises the JUnit files its command wrote, keeps its exit code and cleans up', async () => {
    const r = await runJigctl(t, ['claim', '--dut', 'rdut', '--exec', '--', 'sh', '-c', writesResults(1)]);
    assert.equal(r.code, 1, 'the exit code stays the command’s');
    assert.match(r.stderr, /jigctl: 2 test cases: 1 passed, 1 failed\n/);
    assert.match(r.stderr, / {2}FAIL smoke › has network: eth0 has no address\n/);
    const dir = /JIGLET_RESULTS=(\S+)/.exec(r.stdout)?.[1];
    assert.ok(dir, r.stdout);
    assert.equal(existsSync(dir), false, 'the temporary results folder is removed');
  });

  it('claim --exec --results DIR keeps the files there; a command without results prints no summary', async () => {
    const keep = join(work, 'kept');
    const r = await runJigctl(t, [
      'claim',
      '--dut',
      'rdut',
      '--results',
      keep,
      '--exec',
      '--',
      'sh',
      '-c',
      writesResults(0),
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /2 test cases: 1 passed, 1 failed/);
    assert.deepEqual(readdirSync(keep), ['smoke.xml']);

    const quiet = await runJigctl(t, ['claim', '--dut', 'rdut', '--exec', '--', 'true']);
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.doesNotMatch(quiet.stderr, /test cases/);
  });

  it('run prints the summary from the final record, and names a results file it could not read', async () => {
    const r = await runJigctl(t, [
      'run',
      '--',
      'sh',
      '-c',
      `${writesResults(0).replace(/; exit 0$/, '')}; echo nonsense > "$JIGLET_RESULTS/broken.xml"`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /jigctl: 2 test cases: 1 passed, 1 failed\n {2}FAIL smoke › has network/);
    assert.match(r.stderr, /some test results could not be read: broken\.xml/);
  });
});

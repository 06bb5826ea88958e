/**
 * Stop and shutdown have deadlines. A process in uninterruptible sleep (state D) outlives SIGKILL
 * until its I/O returns; here a real one is made by moving a job's process into a frozen cgroup v1
 * freezer of the test's own (jiglet does not use the freezer hierarchy on this host). StopJob
 * answers DEADLINE_EXCEEDED naming the process and its state, the agent's shutdown does not wait
 * for it and logs which job it left behind, and the job's end is recorded once it comes.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { type Agent, readServerTls, startAgent } from '../../agent/src/agent.js';
import { JigletClient } from '../../client/src/jiglet-client.js';
import { errorOf } from '../../fixtures/test-support/call-errors.js';
import { testPki } from '../../fixtures/test-support/test-pki.js';
import { waitUntil } from '../../fixtures/test-support/wait-until.js';
import { JobState } from '../../protocol/gen/jiglet/v1/jobs.js';

const FREEZER_ROOT = '/sys/fs/cgroup/freezer';
/** The agent's stop deadline is grace + 5 s of kill settling + 1 s; this is that plus slack. */
const STOP_BOUND_MS = 200 + 5000 + 1000 + 2000;

/** The pid the job printed first (its shell, which then execs sleep in place). */
async function firstLinePid(client: JigletClient, id: string): Promise<number> {
  let text = '';
  for await (const event of client.output(id, { follow: true })) {
    if (event.type === 'chunk') text += Buffer.from(event.data).toString();
    if (text.includes('\n')) break;
  }
  return Number(text.trim());
}

describe('stop and shutdown deadlines', function () {
  this.timeout(30_000);
  let dir: string;
  let freezer: string | undefined;
  let pid = 0;
  const agents: Agent[] = [];

  const start = async (name: string): Promise<{ agent: Agent; logFile: string }> => {
    const pki = await testPki();
    const logFile = join(dir, `${name}.log`);
    const agent = await startAgent({
      listen: '127.0.0.1:0',
      stateDir: join(dir, 'state'),
      tls: readServerTls(pki.jigDir),
      log: pino({ level: 'info' }, pino.destination({ dest: logFile, sync: true })),
    });
    agents.push(agent);
    return { agent, logFile };
  };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-stuck-'));
  });
  after(async () => {
    // Thawed, the pending SIGKILL takes effect and the process is gone.
    if (freezer && existsSync(freezer)) {
      writeFileSync(join(freezer, 'freezer.state'), 'THAWED');
      await waitUntil('the frozen process to die', () => !existsSync(`/proc/${pid}`), 5000);
      rmdirSync(freezer);
    }
    for (const agent of agents) await agent.stop(200);
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers StopJob by its deadline and shuts down without a job stuck in state D', async () => {
    const pki = await testPki();
    const first = await start('first');
    const client = new JigletClient(pki.as('operator', `127.0.0.1:${first.agent.port}`));
    const job = await client.start({ command: 'sh', args: ['-c', 'echo $$; exec sleep 600'] });
    pid = await firstLinePid(client, job.id);
    assert.ok(pid > 1, 'the job printed no pid');
    // `echo $$` runs before the exec: freeze only once the shell has become sleep.
    await waitUntil(
      'the job to exec sleep',
      () => readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep',
    );
    freezer = join(FREEZER_ROOT, `jiglet-test-${process.pid}-${Date.now()}`);
    mkdirSync(freezer);
    writeFileSync(join(freezer, 'cgroup.procs'), String(pid));
    writeFileSync(join(freezer, 'freezer.state'), 'FROZEN');
    await waitUntil('the freezer to freeze', () =>
      readFileSync(join(freezer!, 'freezer.state'), 'utf8').startsWith('FROZEN'),
    );

    const stopAt = Date.now();
    const err = await errorOf(client.stop(job.id, 200));
    const stopMs = Date.now() - stopAt;
    assert.equal(err.code, 'JIGLET_E_DEADLINE_EXCEEDED', err.message);
    assert.match(err.message, new RegExp(`did not end after SIGKILL: pid ${pid} \\(sleep\\) in state D`));
    assert.match(err.message, /uninterruptible sleep/);
    assert.ok(stopMs < STOP_BOUND_MS, `StopJob took ${stopMs} ms`);
    // Honest about it: the job has not ended, and says so.
    assert.equal((await client.get(job.id)).state, JobState.JOB_STATE_RUNNING);
    client.close();

    const shutdownAt = Date.now();
    await first.agent.stop(200);
    const shutdownMs = Date.now() - shutdownAt;
    // The stop above already spent the kill's deadline; shutdown waits only its margin for it.
    assert.ok(shutdownMs < 5000, `shutdown took ${shutdownMs} ms`);
    const leftBehind = readFileSync(first.logFile, 'utf8')
      .split('\n')
      .filter((line) => line.includes('left behind at shutdown'));
    assert.equal(leftBehind.length, 1);
    assert.match(leftBehind[0]!, new RegExp(`"job":"${job.id}"`));
    assert.match(leftBehind[0]!, /in state D/);

    // Once the process can die, its end is recorded after all, and its cgroup removed.
    writeFileSync(join(freezer, 'freezer.state'), 'THAWED');
    const ended = await first.agent.supervisor.ended(job.id);
    assert.equal(ended.record.state, 'stopped');
    // The signals sent while it was frozen were pending: the first one delivered ended it.
    assert.match(ended.record.signal ?? '', /^SIG(TERM|KILL)$/);
    // A new agent on the state directory reads that record, and removes what the first one left.
    const second = await start('second');
    assert.equal(second.agent.supervisor.get(job.id).record.state, 'stopped');
    await second.agent.stop(200);
    assert.doesNotMatch(readFileSync(second.logFile, 'utf8'), /job cgroups remain/);
  });
});

/**
 * One agent per state directory, with real `jiglet serve` processes: of two started at the same
 * instant exactly one runs, a later one is told which pid holds the directory, and neither a
 * pid left in the lock file by a dead agent (and now anybody's) nor an agent killed with SIGKILL
 * blocks the next start.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JigletClient } from '../../client/src/jiglet-client.js';
import { type JigletProcess, startJigletProcess } from '../../fixtures/test-support/jiglet-process.js';
import { type TestPki, testPki } from '../../fixtures/test-support/test-pki.js';

describe('the state directory lock', function () {
  // Four starts of the binary, two at once: seconds each on a loaded machine.
  this.timeout(60_000);
  let pki: TestPki;
  let stateDir: string;
  const started: JigletProcess[] = [];

  function start(): Promise<JigletProcess> {
    const agent = startJigletProcess({ stateDir, tlsDir: pki.jigDir, stderr: 'capture' });
    agent.then((a) => started.push(a)).catch(() => undefined);
    return agent;
  }

  before(async () => {
    pki = await testPki();
    stateDir = mkdtempSync(join(tmpdir(), 'jiglet-lock-'));
  });

  after(async () => {
    for (const a of started) await a.stop('SIGKILL');
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('lets exactly one of two agents started at once run, names it to later ones, and dies with it', async () => {
    // What a pid lock file left by a dead agent looks like once its pid went to another process.
    writeFileSync(join(stateDir, 'agent.lock'), `${process.pid}\n`);
    const both = await Promise.allSettled([start(), start()]);
    const ran = both.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const refused = both.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : []));
    assert.equal(ran.length, 1, `one runs: ${refused.join('\n')}`);
    assert.equal(refused.length, 1);
    assert.match(refused[0]!, /exit 1\).*state directory \S+ is in use by another jiglet/s);
    const holder = ran[0]!;
    const client = new JigletClient(pki.as('operator', holder.address));
    try {
      assert.deepEqual(await client.list(), []);
    } finally {
      client.close();
    }
    assert.equal(readFileSync(join(stateDir, 'agent.lock'), 'utf8'), `${holder.proc.pid}\n`);

    const pid = holder.proc.pid;
    await assert.rejects(
      start(),
      new RegExp(
        `in use by another jiglet, pid ${pid}, which holds the lock on \\S+agent.lock; stop it \\(kill ${pid}\\) first, or give this agent a state directory of its own \\(--state-dir\\)`,
      ),
    );

    // The kernel drops an flock with its holder, however it ends.
    await holder.stop('SIGKILL');
    const next = await start();
    assert.equal(readFileSync(join(stateDir, 'agent.lock'), 'utf8'), `${next.proc.pid}\n`);
  });
});

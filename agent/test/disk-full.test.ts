/**
 * The state directory fills up (a real 4 MiB tmpfs): the job whose output cannot be kept is
 * stopped with a clear reason, new jobs are refused as RESOURCE_EXHAUSTED, and the agent lives on.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errorOf } from '../../fixtures/test-support/call-errors.js';
import { collect } from '../../fixtures/test-support/collect.js';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';

describe('a full state directory', () => {
  let mountPoint: string;
  let t: TestAgent;
  before(async () => {
    mountPoint = mkdtempSync(join(tmpdir(), 'jiglet-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mountPoint]);
    t = await startTestAgent({ stateDir: join(mountPoint, 'state') });
  });
  after(async () => {
    await t?.stop();
    execFileSync('umount', [mountPoint]);
    rmSync(mountPoint, { recursive: true, force: true });
  });

  it('stops a job whose output no longer fits, says why, and keeps serving', async () => {
    const op = t.client('operator');
    const job = await op.start({ command: 'head', args: ['-c', String(16 * 1024 * 1024), '/dev/zero'] });
    const { finished } = await collect(op, job.id, { follow: true });
    assert.equal(finished?.stopReason, 'error');
    assert.match(finished?.error ?? '', /could not write this job's output: .*(ENOSPC|no space)/i);
    const err = await errorOf(op.start({ command: 'true' }));
    assert.equal(err.code, 'JIGLET_E_RESOURCE_EXHAUSTED');
    assert.match(err.message, /no space left for a new job/);
    assert.equal((await op.get(job.id)).id, job.id, 'the agent still answers');
  });
});

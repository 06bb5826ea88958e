/** Bad requests get a clear gRPC error and never hurt the agent. */
import assert from 'node:assert/strict';
import { errorOf, writeAndEnd } from '../../fixtures/test-support/call-errors.js';
import { collect } from '../../fixtures/test-support/collect.js';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';
import type { JobState } from '../../protocol/gen/jiglet/v1/jobs.js';

describe('bad input', () => {
  let t: TestAgent;
  before(async () => {
    t = await startTestAgent();
  });
  after(async () => {
    // The agent must still be serving after everything below.
    const job = await t.client('operator').start({ command: 'echo', args: ['still here'] });
    assert.equal(
      (await collect(t.client('operator'), job.id, { follow: true })).all.toString(),
      'still here\n',
    );
    await t.stop();
  });

  const cases: [string, (t: TestAgent) => Promise<unknown>, string, RegExp][] = [
    [
      'an empty command',
      (t) => t.client('operator').start({ command: '' }),
      'JIGLET_E_INVALID_ARGUMENT',
      /command is empty/,
    ],
    [
      'a blank command',
      (t) => t.client('operator').start({ command: '   ' }),
      'JIGLET_E_INVALID_ARGUMENT',
      /command is empty/,
    ],
    [
      'oversized arguments',
      (t) => t.client('operator').start({ command: 'echo', args: ['x'.repeat(300 * 1024)] }),
      'JIGLET_E_INVALID_ARGUMENT',
      /at most 262144/,
    ],
    [
      'too many arguments',
      (t) => t.client('operator').start({ command: 'echo', args: Array.from({ length: 5000 }, () => 'a') }),
      'JIGLET_E_INVALID_ARGUMENT',
      /at most 4096/,
    ],
    [
      'a NUL in an argument',
      (t) => t.client('operator').start({ command: 'echo', args: ['a\0b'] }),
      'JIGLET_E_INVALID_ARGUMENT',
      /NUL/,
    ],
    [
      'a bad env name',
      (t) => t.client('operator').start({ command: 'true', env: { 'A-B': '1' } }),
      'JIGLET_E_INVALID_ARGUMENT',
      /valid variable name/,
    ],
    [
      'a relative cwd',
      (t) => t.client('operator').start({ command: 'true', cwd: 'tmp' }),
      'JIGLET_E_INVALID_ARGUMENT',
      /^the working directory must be an absolute path on the jig host; got "tmp"$/,
    ],
    [
      'a tiny memory limit',
      (t) => t.client('operator').start({ command: 'true', memoryBytes: 1024 }),
      'JIGLET_E_INVALID_ARGUMENT',
      /^the memory limit must be between 4M and \d+M, this host's memory; got 1K$/,
    ],
    [
      'a memory limit beyond the host',
      (t) => t.client('operator').start({ command: 'true', memoryBytes: 2 ** 50 }),
      'JIGLET_E_INVALID_ARGUMENT',
      /^the memory limit must be between 4M and \d+M, this host's memory; got 1073741824M$/,
    ],
    [
      'a CPU limit beyond the host',
      (t) => t.client('operator').start({ command: 'true', cpuMillis: 1_000_000 }),
      'JIGLET_E_INVALID_ARGUMENT',
      /^the CPU limit must be between 0\.01 and \d+ CPUs, all of this host's; got 1000$/,
    ],
    [
      'a pids limit beyond the kernel',
      (t) => t.client('operator').start({ command: 'true', pidsMax: 2 ** 31 }),
      'JIGLET_E_INVALID_ARGUMENT',
      /^the process limit must be at most 4194304; got 2147483648$/,
    ],
    [
      'a timeout beyond a week',
      (t) => t.client('operator').start({ command: 'true', timeoutMs: 30 * 86400_000 }),
      'JIGLET_E_INVALID_ARGUMENT',
      /^the job timeout must be between 0s and 168h; got 720h$/,
    ],
    [
      'an unknown job id',
      (t) => t.client('viewer').get('0b7d6f0e-0000-4000-8000-000000000000'),
      'JIGLET_E_NOT_FOUND',
      /no job with id/,
    ],
    ['an empty job id', (t) => t.client('viewer').get(''), 'JIGLET_E_INVALID_ARGUMENT', /job id is required/],
    [
      'a huge job id',
      (t) => t.client('viewer').get('x'.repeat(10_000)),
      'JIGLET_E_INVALID_ARGUMENT',
      /too long/,
    ],
    ['stopping an unknown job', (t) => t.client('admin').stop('nope'), 'JIGLET_E_NOT_FOUND', /no job/],
    [
      'a grace period of a day',
      (t) => t.client('admin').stop('nope', 86400_000),
      'JIGLET_E_NOT_FOUND',
      /no job/,
    ],
  ];
  for (const [what, call, code, message] of cases) {
    it(`refuses ${what}`, async () => {
      const err = await errorOf(call(t));
      assert.equal(err.code, code, err.message);
      assert.match(err.message, message);
    });
  }

  it('refuses an offset past the end, however large, with OUT_OF_RANGE', async () => {
    const op = t.client('operator');
    const job = await op.start({ command: 'echo', args: ['hello'] });
    await collect(op, job.id, { follow: true });
    for (const offset of [7n, 2n ** 53n + 10n, 2n ** 63n, 2n ** 64n - 1n]) {
      const err = await errorOf(collect(op, job.id, { offset }));
      assert.equal(err.code, 'JIGLET_E_OUT_OF_RANGE', `offset ${offset}: ${err.message}`);
      assert.match(err.message, /past the end of job .* output \(6 bytes\)/);
    }
  });

  it('refuses a negative offset in the client library, before anything is sent', async () => {
    const op = t.client('operator');
    const job = await op.start({ command: 'true' });
    const err = await errorOf(collect(op, job.id, { offset: -1 }));
    assert.equal(err.code, 'JIGLET_E_INVALID_ARGUMENT');
    assert.match(err.message, /offset -1 is not a byte position/);
  });

  it('refuses stopping a job that already ended, saying how and when it ended', async () => {
    const op = t.client('operator');
    const job = await op.start({ command: 'true' });
    await collect(op, job.id, { follow: true });
    const err = await errorOf(op.stop(job.id));
    assert.equal(err.code, 'JIGLET_E_ILLEGAL_TRANSITION');
    assert.match(err.message, /already ended \(exited with code 0 at \d{4}-\d\d-\d\dT[\d:.]+Z\)$/);
  });

  it('refuses writing to a job started without stdin, or to an ended one', async () => {
    const op = t.client('operator');
    const job = await op.start({ command: 'sleep', args: ['100'] });
    const err = await errorOf(writeAndEnd(op, job.id));
    assert.equal(err.code, 'JIGLET_E_FAILED_PRECONDITION');
    assert.match(err.message, /without stdin/);
    await op.stop(job.id, 100);
    const ended = await errorOf(writeAndEnd(op, job.id));
    assert.match(ended.message, /is stopped, not running/);
  });

  it('refuses a bad state filter value', async () => {
    const err = await errorOf(t.client('viewer').list({ states: [99 as JobState] }));
    assert.equal(err.code, 'JIGLET_E_INVALID_ARGUMENT');
  });
});

/**
 * The last line of failure containment, in a real process: the agent's process-level handlers
 * log a stray rejection or exception and go on, exiting (70) only when exceptions come in a burst.
 * (The queue worker's loop is tested in client/test/queue-worker.test.ts, beside its database.)
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';

const DIST = join(import.meta.dirname, '../../dist');

describe('crash paths: process-level containment', function () {
  this.timeout(30_000);

  it('logs a stray rejection or exception and goes on; a burst of exceptions exits 70', async () => {
    const script = `
      const { pino } = await import('pino');
      const { containProcessFailures, MAX_EXCEPTIONS } = await import(${JSON.stringify(join(DIST, 'agent/src/process-failures.js'))});
      containProcessFailures(pino(pino.destination({ dest: 1, sync: true })));
      Promise.reject(new Error('stray rejection'));
      setTimeout(() => { throw new Error('stray exception'); }, 10);
      setTimeout(() => {
        process.stderr.write('still alive\\n');
        for (let i = 0; i < MAX_EXCEPTIONS; i++) setImmediate(() => { throw new Error('burst ' + i); });
      }, 50);
      setTimeout(() => process.stderr.write('never reached\\n'), 20000);
    `;
    const proc = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd: DIST,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    proc.stdout!.on('data', (chunk: Buffer) => {
      out += chunk;
    });
    proc.stderr!.on('data', (chunk: Buffer) => {
      err += chunk;
    });
    const [code] = await once(proc, 'exit');
    assert.equal(code, 70, `${out}\n${err}`);
    assert.match(err, /still alive/);
    assert.doesNotMatch(err, /never reached/);
    const lines = out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { level: number; msg: string; err?: { message: string } });
    assert.ok(
      lines.some(
        (l) =>
          l.level === 50 && l.err?.message === 'stray rejection' && /unhandled promise rejection/.test(l.msg),
      ),
    );
    assert.ok(
      lines.some(
        (l) => l.level === 60 && l.err?.message === 'stray exception' && /the agent goes on/.test(l.msg),
      ),
    );
    assert.match(
      lines.at(-1)!.msg,
      /11 uncaught exceptions within 60000 ms: exiting so the agent is restarted/,
    );
  });
});

/**
 * Hardware actions as jobs, end to end on the virtual DUT: `jig-driver serial` captures its real
 * pty UART into the job's output log, `jig-driver power` switches it over HTTP, and a client logs
 * in by writing to the capture job's stdin — the path real hardware will take.
 */
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JigletClient } from '../../client/src/jiglet-client.js';
import { collect } from '../../fixtures/test-support/collect.js';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';
import { startVirtualDut, type VirtualDut } from '../../fixtures/virtual-dut/virtual-dut.js';
import { SerialRecordDecoder } from '../../jig-drivers/src/serial-framing.js';
import { JobState } from '../../protocol/gen/jiglet/v1/jobs.js';
import { readDriverText, summarizeDriverFailure } from '../../protocol/src/driver-events.js';

const JIG_DRIVER = join(import.meta.dirname, '../../dist/bundle/jig-driver.js');
const WAIT_MS = 10_000;

/** Follows a serial capture job and decodes its records into text and events. */
class SerialView {
  text = '';
  events: string[] = [];
  readonly #changed = new EventEmitter();
  readonly done: Promise<void>;

  constructor(client: JigletClient, jobId: string) {
    const decoder = new SerialRecordDecoder();
    this.done = (async () => {
      for await (const ev of client.output(jobId, { follow: true })) {
        if (ev.type !== 'chunk') continue;
        for (const r of decoder.push(ev.data)) {
          if (r.kind === 'chunk') this.text += r.data.toString('latin1');
          else this.events.push(`${r.event} ${r.detail}`);
        }
        this.#changed.emit('change');
      }
    })();
  }

  /** Resolves once `predicate` holds; fails with `what` after the deadline. */
  async until(what: string, predicate: () => boolean): Promise<void> {
    const deadline = AbortSignal.timeout(WAIT_MS);
    while (!predicate()) {
      try {
        await once(this.#changed, 'change', { signal: deadline });
      } catch {
        throw new Error(
          `no ${what} within ${WAIT_MS} ms; serial so far: ${JSON.stringify(this.text.slice(-300))}`,
        );
      }
    }
  }
}

describe('hardware actions as jobs (virtual DUT)', () => {
  let t: TestAgent;
  let dut: VirtualDut;
  let dir: string;
  before(async () => {
    // The driver runs here as a client's own job (no jig description, so no DUT to name), on a pty
    // only root may open: an agent that runs users' jobs as itself (jobUsers: agent).
    t = await startTestAgent({ jobUsers: { mode: 'agent' } });
    dir = mkdtempSync(join(tmpdir(), 'jiglet-dut-'));
    dut = await startVirtualDut({ name: 'rpi4-a', uartLink: join(dir, 'rpi4-a-uart') });
  });
  after(async () => {
    await dut?.stop();
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const powerJob = (op: JigletClient, action: string, url = dut.powerUrl) =>
    op.start({
      command: process.execPath,
      args: [
        JIG_DRIVER,
        'power',
        action,
        '--dut',
        'rpi4-a',
        '--config',
        JSON.stringify({ driver: 'virtual', url }),
      ],
    });

  it('captures the boot through a serial job, powers on through a power job, and logs in over stdin', async () => {
    const op = t.client('operator');
    const capture = await op.start({
      command: process.execPath,
      args: [JIG_DRIVER, 'serial', '--path', dut.uartPath],
      stdin: true,
    });
    const serial = new SerialView(op, capture.id);
    await serial.until('open event', () => serial.events.some((e) => e.startsWith('open ')));

    const on = await collect(op, (await powerJob(op, 'on')).id, { follow: true });
    assert.equal(on.finished?.exitCode, 0, on.stderr.toString());
    assert.match(on.stderr.toString(), /"step":\{"dut":"rpi4-a","driver":"virtual","action":"on"/);
    await serial.until('login prompt', () => serial.text.includes('rpi4-a login: '));
    assert.match(serial.text, /U-Boot 2024\.01 \(virtual\)/);

    const console = op.stdin(capture.id);
    await console.write('root\r');
    await serial.until('password prompt', () => serial.text.includes('Password: '));
    await console.write('secret\r');
    await serial.until('shell prompt', () => serial.text.includes('root@rpi4-a:~# '));
    await console.write('uname -a\r');
    await serial.until('uname output', () => serial.text.includes('Linux rpi4-a 6.1.0-virtual'));
    await console.end();

    const status = await collect(op, (await powerJob(op, 'status')).id, { follow: true });
    assert.equal(status.stdout.toString(), 'on\n');

    const stopped = await op.stop(capture.id, 1000);
    assert.equal(stopped.state, JobState.JOB_STATE_STOPPED);
    await serial.done;
    // The whole session stays in the job's durable log for anyone who tails it later.
    const replay = new SerialView(t.client('viewer'), capture.id);
    await replay.done;
    assert.equal(replay.text, serial.text);
  });

  it('reports a power driver failure as a failed job with its reason', async () => {
    const op = t.client('operator');
    const job = await powerJob(op, 'on', 'http://127.0.0.1:1');
    const got = await collect(op, job.id, { follow: true });
    assert.equal(got.finished?.exitCode, 1);
    assert.match(got.stderr.toString(), /jig-driver: .*(refused|ECONNREFUSED|unreachable)/i);
    // Before its last words, the driver printed its failure with its code, for the agent to read.
    const said = summarizeDriverFailure(readDriverText(got.stderr.toString()));
    assert.equal(said.code, 'JIGLET_E_UNAVAILABLE');
    assert.match(said.reason, /refused|ECONNREFUSED|unreachable/i);
  });
});

/**
 * The jig under bad input and broken hardware: failing, hanging and garbage-answering power
 * drivers are failed jobs with their reason; a missing serial port is reported, not fatal; bad
 * requests get the right status; bad service or jig config stops `jiglet serve` before it starts.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { ExpectTimeoutError, SerialState } from '../../client/src/jig-client.js';
import { errorOf } from '../../fixtures/test-support/call-errors.js';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';
import { parseJigDescription } from '../../jig-drivers/src/jig-description.js';
import { JobState } from '../../protocol/gen/jiglet/v1/jobs.js';
import { DriverFailedError } from '../../protocol/src/errors.js';

const JIGLET = join(import.meta.dirname, '../../dist/agent/src/main.js');

describe('jig bad input and broken hardware', function () {
  this.timeout(30_000);
  let t: TestAgent;
  let plug: Server;
  before(async () => {
    // A "smart plug" that answers every request with an HTML error page.
    plug = createServer((_req, res) => res.end('<html>502 upstream</html>'));
    await new Promise<void>((resolve) => plug.listen(0, '127.0.0.1', resolve));
    const port = (plug.address() as AddressInfo).port;
    const jig = parseJigDescription(
      JSON.stringify({
        duts: [
          {
            name: 'stuck-relay',
            power: {
              driver: 'command',
              on: 'echo "relay 2 stuck" >&2; exit 3',
              off: 'true',
              status: 'echo on',
              statusOnPattern: '^on$',
            },
          },
          { name: 'hung-relay', power: { driver: 'command', on: 'sleep 600', off: 'true', timeoutMs: 300 } },
          { name: 'garbage-plug', power: { driver: 'tasmota', url: `http://127.0.0.1:${port}` } },
          { name: 'no-port', serial: { path: '/nonexistent/ttyUSB9' } },
        ],
      }),
      'broken-lab.yaml',
    );
    t = await startTestAgent({ jig });
  });
  after(async () => {
    await t?.stop();
    plug?.close();
  });

  it('reports a failing power command as a failed job with its stderr', async () => {
    const op = t.client('operator');
    const err = await errorOf(op.jig.power('stuck-relay', 'on'));
    assert.equal(err.code, 'JIGLET_E_DRIVER_FAILED');
    assert.match(err.message, /power on of stuck-relay failed: the command driver failed: .*relay 2 stuck/);
    // The job named is the DUT's long-lived power driver: an agent job that goes on serving.
    const jobId = /\(job ([0-9a-f-]+)\)$/.exec(err.message)?.[1];
    assert.ok(jobId, err.message);
    // The job and the driver's own code reach the client as data, next to the mapped status: the
    // request was fine and the agent reachable (ABORTED), the relay is what failed (UNAVAILABLE).
    assert.ok(err instanceof DriverFailedError, String(err));
    assert.equal((err.cause as { code?: number }).code, status.ABORTED);
    assert.equal(err.jobId, jobId);
    assert.equal(err.driverCode, 'JIGLET_E_UNAVAILABLE');
    const job = await op.get(jobId);
    assert.equal(job.state, JobState.JOB_STATE_RUNNING);
    assert.equal(job.title, 'power driver for stuck-relay');
    // The run record has the failed action: who asked, and why it failed.
    const record = await op.records.timeline({ jobId });
    const failed = record.events.filter((e) => e.fields.action === 'on' && e.fields.error !== undefined);
    assert.equal(failed.length, 1, JSON.stringify(record.events));
    assert.equal(failed[0]!.fields.by, 'operator');
    assert.match(failed[0]!.fields.error!, /relay 2 stuck/);
    assert.equal(failed[0]!.fields.state, 'unknown');
    const listed = (await op.jig.duts()).find((d) => d.name === 'stuck-relay');
    assert.match(listed?.power?.lastError ?? '', /relay 2 stuck/);
    assert.equal(listed?.power?.lastJobId, jobId);
    // The driver still answers what it can: status works.
    assert.equal((await op.jig.power('stuck-relay', 'status')).state, 'on');
  });

  it('stops a hanging power command at its timeout and frees the DUT for the next action', async () => {
    const op = t.client('operator');
    const [first, second] = await Promise.all([
      errorOf(op.jig.power('hung-relay', 'on')),
      op.jig.power('hung-relay', 'off'),
    ]);
    assert.equal(first.code, 'JIGLET_E_DRIVER_FAILED');
    assert.match(first.message, /timed out|deadline|300 ms/i);
    assert.match(first.message, /hung-relay/);
    // The driver's own deadline ended the command: its code says so.
    assert.equal((first as DriverFailedError).driverCode, 'JIGLET_E_DEADLINE_EXCEEDED');
    // Queued behind the hung one, then run: the power lock is never held forever.
    assert.equal(second.state, 'off');
  });

  it('reports an HTTP plug that answers garbage', async () => {
    const err = await errorOf(t.client('operator').jig.power('garbage-plug', 'on'));
    assert.equal(err.code, 'JIGLET_E_DRIVER_FAILED');
    assert.match(err.message, /tasmota driver failed: .+/);
    assert.match(err.message, /^power on of garbage-plug failed/);
    assert.equal((err as DriverFailedError).driverCode, 'JIGLET_E_UNAVAILABLE');
    assert.equal((err.cause as { code?: number }).code, status.ABORTED);
  });

  it('keeps a capture waiting on a serial port that does not exist, and says so', async () => {
    const viewer = t.client('viewer');
    const dut = (await viewer.jig.duts()).find((d) => d.name === 'no-port');
    assert.equal(dut?.serial?.state, SerialState.SERIAL_STATE_ABSENT);
    assert.match(dut?.serial?.lastEvent ?? '', /^waiting \/nonexistent\/ttyUSB9/);
    const err = await errorOf(viewer.jig.expect('no-port', 'login:', { timeoutMs: 200 }));
    assert.ok(err instanceof ExpectTimeoutError);
    assert.match(err.serialState, /serial port \(\/nonexistent\/ttyUSB9\) is absent/);
    assert.match(err.message, /no line matched \/login:\/ within 200 ms \(the serial port/);
  });

  it('refuses actions on resources a DUT does not have, and malformed requests', async () => {
    const op = t.client('operator');
    const noPower = await errorOf(op.jig.power('no-port', 'on'));
    assert.equal(noPower.code, 'JIGLET_E_FAILED_PRECONDITION');
    assert.match(noPower.message, /no-port has no power driver/);
    const noSerial = await errorOf(op.jig.console('stuck-relay'));
    assert.equal(noSerial.code, 'JIGLET_E_FAILED_PRECONDITION');
    assert.match(noSerial.message, /stuck-relay has no serial console/);
    assert.equal(
      (await errorOf(op.jig.power('stuck-relay', 'on', { offTimeMs: 10 }))).code,
      'JIGLET_E_INVALID_ARGUMENT',
    );
    assert.equal((await errorOf(op.jig.power('x'.repeat(200), 'on'))).code, 'JIGLET_E_INVALID_ARGUMENT');
    assert.equal(
      (await errorOf(op.jig.expect('no-port', 'x'.repeat(5000)))).code,
      'JIGLET_E_INVALID_ARGUMENT',
    );
    const tail = await errorOf(
      (async () => {
        for await (const _ of op.jig.serial('no-port', { offset: 10 ** 12 })) {
          // nothing: the call fails first
        }
      })(),
    );
    assert.equal(tail.code, 'JIGLET_E_OUT_OF_RANGE');
  });
});

describe('jiglet serve with a bad jig or services config', () => {
  let dir: string;
  let tls: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-badcfg-'));
    const { testPki } = await import('../../fixtures/test-support/test-pki.js');
    tls = (await testPki()).jigDir;
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const serve = (config: string): Promise<{ code: number; stderr: string }> => {
    const file = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(file, config);
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        [
          JIGLET,
          'serve',
          '--config',
          file,
          '--tls-dir',
          tls,
          '--state-dir',
          join(dir, 'state'),
          '--listen',
          '127.0.0.1:0',
        ],
        (err, _stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stderr }),
      );
    });
  };

  it('exits 78 naming the key for a missing or invalid jig description part', async () => {
    const missingDuts = await serve('duts:\n  - labels: { a: b }\n');
    assert.equal(missingDuts.code, 78);
    assert.match(missingDuts.stderr, /duts\[0\]\.name/);
    const badService = await serve(
      'services:\n  - name: vdut\n    command: node\n    readyPattern: "(unclosed"\n',
    );
    assert.equal(badService.code, 78);
    assert.match(badService.stderr, /services\.0\.readyPattern: expected an RE2 regular expression/);
  });

  it('exits 1 naming the service that never became ready, and leaves nothing running', async () => {
    const result = await serve(
      'services:\n  - name: silent\n    command: sh\n    args: [-c, "echo starting; exit 4"]\n    readyPattern: "^ready"\n',
    );
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /service silent ended \(exited, exit code 4\) before it was ready; its last output: starting/,
    );
  });
});

/**
 * JigService end to end on virtual DUTs: the agent captures each DUT's pty UART from start,
 * switches its power through the virtual (Tasmota) driver as jobs, and serves tail, console and
 * expect over real mutual-TLS gRPC.
 */
import assert from 'node:assert/strict';
import {
  type ConsoleSession,
  ExpectTimeoutError,
  type SerialRecord,
  SerialState,
} from '../../client/src/jig-client.js';
import { startVirtualJig, type VirtualJig } from '../../fixtures/test-support/virtual-jig.js';
import { JigletError } from '../../protocol/src/errors.js';

/** Reads a console's output until `text` has appeared; returns all text read. */
async function readUntil(session: ConsoleSession, text: string, seen = { text: '' }): Promise<string> {
  for await (const record of session.output) {
    if (record.type === 'chunk') seen.text += record.data.toString('latin1');
    if (seen.text.includes(text)) return seen.text;
  }
  throw new Error(
    `console ended before ${JSON.stringify(text)}; got ${JSON.stringify(seen.text.slice(-200))}`,
  );
}

function chunksText(records: SerialRecord[]): string {
  return records.map((r) => (r.type === 'chunk' ? r.data.toString('latin1') : '')).join('');
}

describe('JigService on a virtual jig', function () {
  this.timeout(30_000);
  let v: VirtualJig;
  before(async () => {
    v = await startVirtualJig([{ name: 'vdut-a' }, { name: 'vdut-b' }]);
  });
  after(async () => {
    await v?.stop();
  });

  it('lists the DUTs with their power driver and an open serial capture', async () => {
    const viewer = v.t.client('viewer');
    // The capture opens the pty asynchronously; wait for its open event through expect-free polling of state.
    const duts = await viewer.jig.duts();
    assert.deepEqual(
      duts.map((d) => d.name),
      ['vdut-a', 'vdut-b'],
    );
    const a = duts[0]!;
    assert.equal(a.power?.driver, 'virtual');
    assert.equal(a.labels['device-type'], 'virtual');
    assert.equal(a.safePower, 'off');
    assert.match(a.serial?.captureJobId ?? '', /^[0-9a-f-]{36}$/);
    assert.ok([SerialState.SERIAL_STATE_STARTING, SerialState.SERIAL_STATE_OPEN].includes(a.serial!.state));
  });

  it('powers on, expects the login prompt from the power-on, logs in over the console and runs a command', async () => {
    const op = v.t.client('operator');
    const on = await op.jig.power('vdut-a', 'on');
    assert.equal(on.state, 'on');
    const prompt = await op.jig.expect('vdut-a', 'login: $', { offset: on.serialOffset, timeoutMs: 10_000 });
    assert.equal(prompt.line, 'vdut-a login: ');
    assert.ok(prompt.lineOffset >= on.serialOffset);

    const session = await op.jig.console('vdut-a');
    await session.write('root\r');
    const seen = { text: '' };
    await readUntil(session, 'Password: ', seen);
    await session.write('secret\r');
    await readUntil(session, 'root@vdut-a:~# ', seen);
    await session.write('uname -a\r');
    await readUntil(session, 'Linux vdut-a 6.1.0-virtual', seen);
    await session.close();

    const status = await v.t.client('viewer').jig.power('vdut-a', 'status');
    assert.equal(status.state, 'on');
    const tail: SerialRecord[] = [];
    for await (const r of v.t.client('viewer').jig.serial('vdut-a', { offset: on.serialOffset }))
      tail.push(r);
    const text = chunksText(tail);
    assert.match(text, /U-Boot 2024\.01 \(virtual\)/);
    assert.match(text, /Linux vdut-a 6\.1\.0-virtual/);
  });
});

/**
 * JigService end to end on virtual DUTs: the agent captures each DUT's pty UART from start,
 * switches its power through the virtual (Tasmota) driver as jobs, and serves tail, console and
 * expect over real mutual-TLS gRPC.
 */
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  type ConsoleSession,
  ExpectTimeoutError,
  type SerialRecord,
  SerialState,
} from '../../client/src/jig-client.js';
import { errorOf } from '../../fixtures/test-support/call-errors.js';
import { startVirtualJig, type VirtualJig } from '../../fixtures/test-support/virtual-jig.js';

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

  it('keeps one console writer: a second operator is refused, an admin takes over and the first is told', async () => {
    const first = await v.t.client('operator').jig.console('vdut-b');
    const refused = await errorOf(v.t.client('operator2').jig.console('vdut-b'));
    assert.equal(refused.code, 'JIGLET_E_FAILED_PRECONDITION');
    assert.match(refused.message, /in use by operator since/);
    const listed = (await v.t.client('viewer').jig.duts()).find((d) => d.name === 'vdut-b');
    assert.equal(listed?.serial?.consoleWriter, 'operator');

    const denied = await errorOf(v.t.client('operator2').jig.console('vdut-b', { takeOver: true }));
    assert.equal(denied.code, 'JIGLET_E_PERMISSION_DENIED');

    const admin = await v.t.client('admin').jig.console('vdut-b', { takeOver: true });
    const kicked = await errorOf(
      (async () => {
        for await (const _ of first.output) {
          // drain until the agent ends the session
        }
      })(),
    );
    assert.equal(kicked.code, 'JIGLET_E_TAKEN_OVER');
    assert.match(kicked.message, /admin took over the console of vdut-b/);
    await admin.close();
    // Released: anyone may attach again.
    const again = await v.t.client('operator2').jig.console('vdut-b');
    await again.close();
  });

  it('keeps driver configs (which may hold credentials) out of what viewers can list', async () => {
    const op = v.t.client('operator');
    const { jobId } = await op.jig.power('vdut-b', 'status');
    const job = await v.t.client('viewer').get(jobId);
    const argv = job.spec!.args.join(' ');
    const url = String(v.t.agent.jig.get('vdut-b').dut.power?.url);
    assert.ok(!argv.includes(url), `the power config is in the job's argv: ${argv}`);
    const file = /--config @(\S+)/.exec(argv)?.[1];
    assert.ok(file, argv);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(dirname(file)).mode & 0o777, 0o700);
  });

  it('lets a viewer read power state and serial, but not switch power or type', async () => {
    const viewer = v.t.client('viewer');
    const denied = await errorOf(viewer.jig.power('vdut-b', 'on'));
    assert.equal(denied.code, 'JIGLET_E_PERMISSION_DENIED');
    assert.match(denied.message, /may read but not switch the power of vdut-b/);
    const status = await viewer.jig.power('vdut-b', 'status');
    assert.ok(['on', 'off'].includes(status.state));
    assert.equal((await errorOf(viewer.jig.console('vdut-b'))).code, 'JIGLET_E_PERMISSION_DENIED');
  });

  it('answers an expect timeout with the last lines seen, and a bad pattern or DUT with a clear error', async () => {
    const op = v.t.client('operator');
    const timeout = await errorOf(op.jig.expect('vdut-a', 'kernel panic', { timeoutMs: 300 }));
    assert.ok(timeout instanceof ExpectTimeoutError);
    assert.ok(timeout.lastLines.includes('vdut-a login: root'), JSON.stringify(timeout.lastLines));

    const bad = await errorOf(op.jig.expect('vdut-a', '(a', { timeoutMs: 300 }));
    assert.equal(bad.code, 'JIGLET_E_INVALID_ARGUMENT');
    assert.match(bad.message, /does not compile: .*missing closing \)/);

    const unknown = await errorOf(op.jig.power('nope', 'on'));
    assert.equal(unknown.code, 'JIGLET_E_NOT_FOUND');
    assert.match(unknown.message, /no DUT "nope" on this jig \(there are: vdut-a, vdut-b\)/);
    assert.equal((await errorOf(op.jig.power('', 'status'))).code, 'JIGLET_E_INVALID_ARGUMENT');
    const past = await errorOf(op.jig.expect('vdut-a', 'x', { offset: 2 ** 40 }));
    assert.equal(past.code, 'JIGLET_E_OUT_OF_RANGE');
  });

  it('matches in linear time: a pathological pattern on a long line does not stall the agent', async () => {
    const op = v.t.client('operator');
    const from = Number((await op.jig.duts()).find((d) => d.name === 'vdut-a')?.serial?.endOffset ?? 0);
    // (a+)+b against 5000 "a"s and no "b" takes a backtracking engine longer than this test lives.
    v.dut('vdut-a').inject(Buffer.from(`${'a'.repeat(5000)}c\r\n`));
    v.dut('vdut-a').inject(Buffer.from('aaab\r\n'));
    const match = await op.jig.expect('vdut-a', '^(a+)+b$', { offset: from, timeoutMs: 10_000 });
    assert.equal(match.line, 'aaab');
    assert.equal((await op.jig.duts()).length, 2);
  });

  it("finds the next line from a match's nextOffset, also when both lines came in one record", async () => {
    const op = v.t.client('operator');
    const from = Number((await op.jig.duts()).find((d) => d.name === 'vdut-a')?.serial?.endOffset ?? 0);
    // One write, which the capture reads (here, as a rule) as one chunk: one record, two lines.
    v.dut('vdut-a').inject(Buffer.from('\r\nchain first\r\nchain second\r\nchain third'));
    const first = await op.jig.expect('vdut-a', '^chain first$', { offset: from, timeoutMs: 5000 });
    const second = await op.jig.expect('vdut-a', '^chain second$', {
      offset: first.nextOffset,
      timeoutMs: 5000,
    });
    assert.ok(second.nextOffset > first.nextOffset);
    // An unfinished last line (a prompt) matches too, and ends where the bytes end.
    const third = await op.jig.expect('vdut-a', '^chain third$', {
      offset: second.nextOffset,
      timeoutMs: 5000,
    });
    assert.equal(third.line, 'chain third');
    // Nothing before nextOffset is seen again.
    const again = await errorOf(
      op.jig.expect('vdut-a', '^chain first$', { offset: first.nextOffset, timeoutMs: 300 }),
    );
    assert.ok(again instanceof ExpectTimeoutError);
    assert.ok(again.lastLines.includes('chain second'), JSON.stringify(again.lastLines));
  });

  it('resumes a tail at any offset it printed, and reads by time', async () => {
    const viewer = v.t.client('viewer');
    // Twelve lines, each awaited on the agent, are twelve records however the pty coalesces reads.
    let from = Number((await viewer.jig.duts())[0]?.serial?.endOffset ?? 0);
    for (let i = 0; i < 12; i++) {
      v.dut('vdut-a').inject(Buffer.from(`\r\nrecord ${i}\r\n`));
      from = (await viewer.jig.expect('vdut-a', `^record ${i}$`, { offset: from, timeoutMs: 5000 }))
        .nextOffset;
    }
    const all: SerialRecord[] = [];
    for await (const r of viewer.jig.serial('vdut-a')) all.push(r);
    assert.ok(all.length > 10);
    // A chunk of a few bytes at least, near the middle (events are records too).
    const chunks = all.filter((r) => r.type === 'chunk' && r.data.length >= 3);
    const middle = chunks[Math.floor(chunks.length / 2)]!;
    const resumed: SerialRecord[] = [];
    for await (const r of viewer.jig.serial('vdut-a', { offset: middle.offset })) resumed.push(r);
    assert.deepEqual(
      resumed.map((r) => r.offset),
      all.slice(all.indexOf(middle)).map((r) => r.offset),
    );
    // An offset inside a record gives what follows it: inside the header, all of the record's
    // data; inside the data, the rest of it. Then the records after it, whole.
    const readFrom = async (offset: number): Promise<SerialRecord[]> => {
      const got: SerialRecord[] = [];
      for await (const r of viewer.jig.serial('vdut-a', { offset })) got.push(r);
      return got;
    };
    assert.equal(middle.type, 'chunk');
    const middleData = middle.type === 'chunk' ? middle.data : Buffer.alloc(0);
    const inHeader = await readFrom(middle.offset + 1);
    assert.equal(inHeader[0]?.offset, middle.offset + 1);
    assert.deepEqual(inHeader[0]?.type === 'chunk' && inHeader[0].data, middleData);
    assert.equal(inHeader[1]?.offset, middle.nextOffset);
    const inData = await readFrom(middle.nextOffset - 3);
    assert.deepEqual(inData[0]?.type === 'chunk' && inData[0].data, middleData.subarray(-3));
    assert.equal(inData[0]?.nextOffset, middle.nextOffset);
    assert.equal(inData[1]?.offset, middle.nextOffset);
    const since: SerialRecord[] = [];
    for await (const r of viewer.jig.serial('vdut-a', { since: middle.time })) since.push(r);
    assert.ok(since.every((r) => r.time.getTime() >= middle.time.getTime()));
    assert.ok(since.length >= resumed.length);
  });

  it('closes a console whose output the client never read, however much the DUT printed', async () => {
    const op = v.t.client('operator');
    const on = await op.jig.power('vdut-b', 'on');
    // Done booting first, so no boot line is printed between ours.
    await op.jig.expect('vdut-b', 'login: $', { offset: on.serialOffset, timeoutMs: 10_000 });
    const session = await op.jig.console('vdut-b');
    // One record per line (each awaited on the agent), more than grpc-js buffers unread.
    let from = session.attached.offset;
    for (let i = 0; i < 40; i++) {
      v.dut('vdut-b').inject(Buffer.from(`\r\nunread line ${i}\r\n`));
      from = (await op.jig.expect('vdut-b', `^unread line ${i}$`, { offset: from, timeoutMs: 5000 }))
        .nextOffset;
    }
    await session.close();
    const listed = (await op.jig.duts()).find((d) => d.name === 'vdut-b');
    assert.equal(listed?.serial?.consoleWriter, '');
  });
});

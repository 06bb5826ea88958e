import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readlinkSync, rmSync, symlinkSync, unlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { ownResourcesLeftBy } from '../../fixtures/test-support/own-resources.js';
import { JigletError } from '../../protocol/src/errors.js';
import { runSerialCapture } from '../src/serial-capture.js';
import { encodeChunk, encodeEvent, type SerialRecord, SerialRecordDecoder } from '../src/serial-framing.js';
import { openPtyPair, type PtyPair } from './helpers/pty-pair.js';
import { RecordSink } from './helpers/record-sink.js';

/** Deterministic PRNG (mulberry32) so a failing random slicing can be replayed. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Every byte value, plus bytes that look like record headers, to prove the framing is binary-safe. */
const NASTY = Buffer.concat([
  Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
  Buffer.from('\n@123 5\n!1 gone x\n\r\n\0\xff', 'latin1'),
]);

describe('serial record codec', () => {
  it('round-trips chunks and events through random slicing', () => {
    const random = prng(42);
    const expected: SerialRecord[] = [];
    const wire: Buffer[] = [];
    for (let i = 0; i < 300; i++) {
      const at = 1_700_000_000_000 + i;
      if (random() < 0.2) {
        expected.push({ kind: 'event', at, event: 'gone', detail: `reason ${i}` });
        wire.push(encodeEvent(at, 'gone', `reason ${i}`));
      } else {
        const start = Math.floor(random() * NASTY.length);
        const data = NASTY.subarray(start, start + Math.floor(random() * 300));
        expected.push({ kind: 'chunk', at, data: Buffer.from(data) });
        wire.push(encodeChunk(at, data));
      }
    }
    const bytes = Buffer.concat(wire);
    for (let round = 0; round < 20; round++) {
      const decoder = new SerialRecordDecoder();
      const got: SerialRecord[] = [];
      for (let off = 0; off < bytes.length; ) {
        const size = 1 + Math.floor(random() * (round % 2 ? 7 : 700)); // tiny cuts split headers
        got.push(...decoder.push(bytes.subarray(off, off + size)));
        off += size;
      }
      assert.deepEqual(got, expected);
      assert.equal(decoder.idle, true);
    }
  });

  it('keeps an event on one line and rejects a header that is not one', () => {
    const [record] = new SerialRecordDecoder().push(encodeEvent(5, 'gone', 'read\nfailed\r\n'));
    assert.deepEqual(record, { kind: 'event', at: 5, event: 'gone', detail: 'read failed ' });
    assert.throws(() => new SerialRecordDecoder().push(Buffer.from('garbage\n')), JigletError);
  });
});

describe('serial capture on a real pty', function () {
  this.timeout(30_000);
  let dir: string;
  let link: string;
  let ptys: PtyPair[];
  let controller: AbortController;
  let sink: RecordSink;
  let clock: number;
  const now = (): number => ++clock;

  const newPty = async (): Promise<PtyPair> => {
    const pty = await openPtyPair();
    ptys.push(pty);
    symlinkSync(pty.slavePath, link); // like /dev/serial/by-id: the capture opens the link
    return pty;
  };
  const start = (extra: { input?: PassThrough; timeoutMs?: number } = {}): Promise<void> =>
    runSerialCapture({
      path: link,
      baudRate: 115200,
      out: sink.stream,
      input: extra.input,
      reopen: { timeoutMs: extra.timeoutMs ?? 60_000 },
      signal: controller.signal,
      now,
    });
  const opened = (count: number) => () =>
    sink.events().filter((e) => e.startsWith('open ') || e.startsWith('reopen ')).length >= count;

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'jiglet-serial-'));
    link = path.join(dir, 'usb-FTDI_DUT-if00-port0');
    ptys = [];
    controller = new AbortController();
    sink = new RecordSink();
    clock = 1_700_000_000_000;
  });
  afterEach(async () => {
    controller.abort();
    for (const pty of ptys) await pty.kill();
    for (const pty of ptys) assert.ok(pty.child.exitCode !== null || pty.child.signalCode !== null);
    rmSync(dir, { recursive: true, force: true });
  });

  it('records DUT output in order, binary-safe and timestamped, after discarding stale bytes', async () => {
    const pty = await newPty();
    pty.child.stdin.write('STALE');
    await pty.until('stale bytes in the pty', () => pty.written() === 5);
    const done = start();
    await sink.until('open', opened(1));
    assert.deepEqual(sink.events(), [`open ${link}`, 'flush tcioflush']);
    const payload = Buffer.concat([NASTY, NASTY, Buffer.alloc(100_000, 0xa5)]);
    pty.child.stdin.write(payload);
    await sink.until('all bytes', () => sink.data().length >= payload.length);
    assert.ok(sink.data().equals(payload), 'bytes differ (stale bytes kept, reordered or altered)');
    const stamps = sink.records.map((r) => r.at);
    assert.deepEqual(
      stamps,
      [...stamps].sort((a, b) => a - b),
    );
    assert.ok(
      stamps.every((at) => at > 1_700_000_000_000 && at <= clock),
      'stamps come from `now`',
    );
    controller.abort();
    await done;
  });

  it('writes console input to the DUT side', async () => {
    const pty = await newPty();
    const input = new PassThrough();
    const done = start({ input });
    await sink.until('open', opened(1));
    input.write(Buffer.from('reboot\r\0\xff', 'latin1'));
    input.write('help\n');
    const expected = Buffer.from('reboot\r\0\xffhelp\n', 'latin1');
    await pty.until('console bytes at the DUT', () => pty.received().length >= expected.length);
    assert.ok(pty.received().equals(expected));
    controller.abort();
    await done;
  });

  it('marks a vanished port, drops input meanwhile, and reopens when it returns', async () => {
    const first = await newPty();
    const input = new PassThrough();
    const done = start({ input });
    await sink.until('open', opened(1));
    first.child.stdin.write('before\0');
    await sink.until('bytes before the gap', () => sink.data().length === 7);

    await first.kill(); // the adapter vanishes: its master closes, udev removes the link
    unlinkSync(link);
    await sink.until('gone', () => sink.events().some((e) => e.startsWith('gone ')));
    input.write('lost!');
    await sink.until('dropped input', () => sink.events().includes('dropped-input 5'));

    const second = await newPty();
    await sink.until('reopen', opened(2));
    second.child.stdin.write(Buffer.from('after\xff', 'latin1'));
    input.write('typed');
    await sink.until('bytes after the gap', () => sink.data().length === 13);
    await second.until('console bytes at the new DUT', () => second.received().length === 5);
    assert.equal(second.received().toString(), 'typed');

    assert.ok(sink.data().equals(Buffer.from('before\0after\xff', 'latin1')));
    const names = sink.records.map((r) => (r.kind === 'chunk' ? 'chunk' : r.event));
    assert.deepEqual(names, ['open', 'flush', 'chunk', 'gone', 'dropped-input', 'reopen', 'flush', 'chunk']);
    controller.abort();
    await done;
  });

  it('reports waiting at once and then once per period while the port stays away, and stops cleanly there', async () => {
    const left = await ownResourcesLeftBy(async () => {
      const done = start({ timeoutMs: 50 });
      await sink.until(
        'three waiting events',
        () => sink.events().filter((e) => e.startsWith('waiting')).length >= 3,
      );
      controller.abort();
      await done;
    });
    assert.deepEqual(left, []);
    // The first one at once (absent from the start), then one per period.
    assert.deepEqual(sink.events().slice(0, 3), [
      `waiting ${link} 0 ms`,
      `waiting ${link} 50 ms`,
      `waiting ${link} 100 ms`,
    ]);
  });

  it('says the port is gone when the DUT side closes, and goes on waiting for it', async () => {
    const pty = await newPty();
    const done = start({ timeoutMs: 50 });
    await sink.until('open', opened(1));
    pty.child.stdin.write('last words');
    await sink.until('data', () => sink.data().toString() === 'last words');
    // The pty master closes: the read hangs up (an adapter's EIO is the same path), or the
    // /dev/pts node's removal is noticed first; either way the gap is marked, after the data.
    await pty.kill();
    await sink.until('gone', () => sink.events().some((e) => e.startsWith('gone ')));
    const gone = sink.events().find((e) => e.startsWith('gone '))!;
    assert.match(gone, /hung up|read failed|vanished/);
    assert.equal(sink.records.at(-1)?.kind, 'event', 'a chunk came after the gap marker');
    // And it waits for the port to come back rather than ending.
    await sink.until('waiting', () => sink.events().some((e) => e.startsWith('waiting ')), 10_000);
    controller.abort();
    await done;
  });

  it('stops on abort leaving no port, listener, timer or watcher behind', async () => {
    const pty = await newPty();
    const input = new PassThrough();
    const left = await ownResourcesLeftBy(async () => {
      const done = start({ input });
      await sink.until('open', opened(1));
      pty.child.stdin.write('x');
      await sink.until('data', () => sink.data().length === 1);
      controller.abort();
      await done;
    });
    assert.deepEqual(left, []);
    assert.equal(input.listenerCount('data'), 0);
    assert.equal(sink.stream.listenerCount('drain'), 0);
    const fds = readdirSync('/proc/self/fd').map((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        return ''; // the fd of readdir itself is gone by now
      }
    });
    assert.ok(!fds.includes(pty.slavePath), 'the serial port is still open');
    assert.ok(!process.getActiveResourcesInfo().includes('FSEventWrap'), 'a directory watcher is left');
  });

  it('stops reading the port while `out` is full, and loses nothing once it drains', async () => {
    sink = new RecordSink(1024);
    const pty = await newPty();
    const done = start();
    await sink.until('open', opened(1));
    sink.stall();
    const payload = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 0xff;
    pty.child.stdin.write(payload);
    // The helper's pty only fills up when nobody reads the slave: the capture has paused.
    await pty.until('the pty to fill up', () => pty.wasBlocked(), 20_000);
    const buffered = sink.stream.writableLength;
    assert.ok(buffered <= 1024 + 65536 + 64, `out buffered ${buffered} bytes despite backpressure`);
    assert.ok(pty.written() < payload.length, 'the DUT side was never held back');
    sink.release();
    await sink.until('every byte', () => sink.data().length >= payload.length, 20_000);
    assert.ok(sink.data().equals(payload));
    controller.abort();
    await done;
  });

  it('keeps every byte read ahead of a stalled `out` when the port hangs up', async () => {
    sink = new RecordSink(1024);
    const pty = await newPty();
    const done = start({ timeoutMs: 50 });
    await sink.until('open', opened(1));
    sink.stall();
    // Less than the read-ahead: the capture is paused for `out` but still reads the port, and
    // holds these bytes in its stream when the hang-up ends its reads.
    const payload = Buffer.alloc(20 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31) & 0xff;
    pty.child.stdin.write(payload);
    await pty.until('the helper to pass it all on', () => pty.written() === payload.length);
    // Until the capture has taken every byte from the pty: what a hang-up finds still in the
    // kernel is discarded (as with an unplugged adapter), what the capture holds must not be.
    while ((await pty.unread()) > 0) {}
    await pty.kill();
    await sink.until('gone', () => sink.offeredEvents.some((e) => e.startsWith('gone ')));
    sink.release();
    await sink.until('gone consumed', () => sink.events().some((e) => e.startsWith('gone ')));
    assert.ok(sink.data().equals(payload), `${sink.data().length} of ${payload.length} bytes kept`);
    assert.equal(sink.records.at(-1)?.kind, 'event', 'a chunk came after the gap marker');
    controller.abort();
    await done;
  });

  it('keeps bytes held back by backpressure when the port vanishes, before the gap marker', async () => {
    sink = new RecordSink(1024);
    const pty = await newPty();
    const done = start();
    await sink.until('open', opened(1));
    sink.stall();
    const payload = Buffer.alloc(512 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 13) & 0xff;
    pty.child.stdin.write(payload);
    await pty.until('the pty to fill up', () => pty.wasBlocked(), 20_000);
    await pty.kill();
    unlinkSync(link);
    // Release only after the capture has given up the port, so the held-back bytes are at stake.
    await sink.until('gone', () => sink.offeredEvents.some((e) => e.startsWith('gone ')));
    sink.release();
    await sink.until('gone consumed', () => sink.events().some((e) => e.startsWith('gone ')));
    const data = sink.data();
    // How much the capture had read ahead (up to 64 KiB) depends on the scheduler: the helper's
    // "blocked" also fires when the capture merely had no CPU for 100 ms (two test suites on two
    // cores), and the kill's hang-up discards what the kernel still held. What it had read must
    // come out whole, in order, before the gap (the next test holds an exact count).
    assert.ok(data.equals(payload.subarray(0, data.length)), 'bytes altered or reordered');
    assert.equal(sink.records.at(-1)?.kind, 'event', 'a chunk came after the gap marker');
    controller.abort();
    await done;
  });
});

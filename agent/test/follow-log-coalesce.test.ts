/**
 * How a follower sizes its messages: output that trickles goes out the moment it is written
 * (a serial console's latency), while output written faster than the transport sends it is
 * gathered into big messages instead of one per write.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitUntil } from '../../fixtures/test-support/wait-until.js';
import { FOLLOW_PIECE_BYTES, followLog } from '../src/output/follow-log.js';
import { LOG_FILE, OutputLog, type StreamName } from '../src/output/output-log.js';

/** A transport whose sends stay "in flight" until the test settles them. */
function heldSink() {
  const sent: Buffer[] = [];
  let inFlight = 0;
  let onSettled: (() => void) | undefined;
  return {
    sent,
    settle(): void {
      inFlight = 0;
      onSettled?.();
    },
    sink: {
      send(piece: { data: Buffer }): boolean {
        sent.push(piece.data);
        inFlight += 1;
        return true;
      },
      drained: async () => {},
      busy: () => inFlight > 0,
      settled: (signal: AbortSignal) =>
        new Promise<void>((resolve) => {
          if (inFlight === 0 || signal.aborted) return resolve();
          const done = (): void => {
            onSettled = undefined;
            signal.removeEventListener('abort', done);
            resolve();
          };
          onSettled = done;
          signal.addEventListener('abort', done, { once: true });
        }),
    },
  };
}

describe('follower message sizes', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-coalesce-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('sends a small write at once, and gathers writes made while a send is in flight', async () => {
    const log = OutputLog.create(dir);
    const held = heldSink();
    const ac = new AbortController();
    const follow = followLog({ log, offset: 0, follow: true, signal: ac.signal, sink: held.sink });

    log.append('stdout', Buffer.from('login: '));
    // Nothing was in flight: the 7 bytes go out without waiting for more.
    await waitUntil('the first write to be sent', () => held.sent.length === 1, 10_000);
    assert.equal(held.sent[0]!.toString(), 'login: ');

    // While that send is in flight, 100 small writes arrive: they wait, and go out as one.
    for (let i = 0; i < 100; i++) log.append('stdout', Buffer.from(`line ${i}\n`));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(held.sent.length, 1, 'sent again while the first send was still in flight');
    held.settle();
    await waitUntil('the gathered writes to be sent', () => held.sent.length === 2, 10_000);
    assert.equal(held.sent[1]!.toString().split('\n').length - 1, 100);

    // A full piece does not wait for anything.
    log.append('stdout', Buffer.alloc(FOLLOW_PIECE_BYTES, 1));
    await waitUntil('the full piece to be sent', () => held.sent.length === 3, 10_000);
    assert.equal(held.sent[2]!.length, FOLLOW_PIECE_BYTES);

    // A follower waiting for its transport still ends when it is cancelled.
    log.append('stdout', Buffer.from('more'));
    ac.abort();
    assert.equal(await follow, 'aborted');
    log.close();
  });

  it("reads each piece straight into the sink's buffer, and a short read into a view of it", async () => {
    const log = OutputLog.create(dir);
    log.append('stdout', Buffer.from('out:'));
    log.append('stderr', Buffer.from('err!'));
    log.close();
    const given: { offset: number; length: number; stream: StreamName; buf: Buffer }[] = [];
    const sent: Buffer[] = [];
    const sink = {
      buffer(offset: number, length: number, stream: StreamName): Buffer {
        const buf = Buffer.alloc(length);
        given.push({ offset, length, stream, buf });
        return buf;
      },
      send(piece: { data: Buffer }): boolean {
        sent.push(piece.data);
        return true;
      },
      drained: async () => {},
    };
    const signal = new AbortController().signal;
    assert.equal(await followLog({ log, offset: 0, follow: false, signal, sink }), 'caught-up');
    // One buffer per piece, never across the change of stream, and each one sent as it is.
    assert.deepEqual(
      given.map(({ offset, length, stream }) => [offset, length, stream]),
      [
        [0, 4, 'stdout'],
        [4, 4, 'stderr'],
      ],
    );
    assert.equal(sent[0], given[0]!.buf);
    assert.equal(sent[1], given[1]!.buf);
    assert.equal(Buffer.concat(sent).toString(), 'out:err!');

    // The file lost its last bytes under the log (a full disk's repair, a hand edit): the read
    // comes up short, and the piece is the part that was read, a view of the given buffer.
    truncateSync(join(dir, LOG_FILE), 6);
    const release = log.acquire();
    try {
      let into: Buffer | undefined;
      const piece = await log.read(4, 1024, (length) => {
        into = Buffer.alloc(length);
        return into;
      });
      assert.equal(piece.data.toString(), 'er');
      assert.notEqual(piece.data, into);
      assert.equal(piece.data.buffer, into!.buffer);
    } finally {
      release();
    }
  });
});

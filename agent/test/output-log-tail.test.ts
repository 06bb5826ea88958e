/**
 * A live output log serves its newest bytes from memory (so a follower that keeps up, such as a
 * serial console tail, is not held up by a trip to the thread pool): what readers get must be
 * exactly what the file holds, split only at stream boundaries, and never ahead of the file.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOG_FILE, OutputLog, type StreamName, TAIL_BYTES } from '../src/output/output-log.js';

/** A deterministic pseudo-random sequence (no flaky seeds). */
function prng(seed: number): () => number {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return x / 0x7fffffff;
  };
}

describe('output log tail in memory', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-tail-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('serves every offset of a live log byte-identical to the file, never across a stream change', async () => {
    const random = prng(13);
    const log = OutputLog.create(dir);
    const release = log.acquire();
    const streams: StreamName[] = [];
    // Tiny appends (a serial console) and large ones (a busy job), from both streams.
    for (let i = 0; i < 400; i++) {
      const size = random() < 0.8 ? 1 + Math.floor(random() * 60) : 1 + Math.floor(random() * 40_000);
      const stream: StreamName = random() < 0.85 ? 'stdout' : 'stderr';
      const chunk = Buffer.alloc(size);
      for (let j = 0; j < size; j++) chunk[j] = Math.floor(random() * 256);
      log.append(stream, chunk);
      for (let j = 0; j < size; j++) streams.push(stream);
    }
    const file = readFileSync(join(dir, LOG_FILE));
    assert.equal(file.length, log.length);
    // Offsets spread over the whole log, and packed near its end (where the tail is).
    const offsets = [
      ...Array.from({ length: 300 }, () => Math.floor(random() * log.length)),
      ...Array.from({ length: 300 }, () => log.length - 1 - Math.floor(random() * TAIL_BYTES * 1.5)),
    ].filter((o) => o >= 0);
    for (const offset of offsets) {
      const max = 1 + Math.floor(random() * 200_000);
      const piece = await log.read(offset, max);
      assert.ok(piece.data.length > 0, `a read at ${offset} of ${log.length} returned nothing`);
      assert.ok(piece.data.length <= max);
      const want = file.subarray(offset, offset + piece.data.length);
      assert.ok(piece.data.equals(want), `bytes at ${offset} (+${piece.data.length}) differ from the file`);
      assert.equal(piece.stream, streams[offset], `stream of the byte at ${offset}`);
      const end = offset + piece.data.length;
      for (let o = offset; o < end; o++) {
        if (streams[o] !== piece.stream)
          assert.fail(`the piece at ${offset} crosses a stream change at ${o}`);
      }
      // It stops at the end of the log or at a stream change, unless `max` cut it short.
      if (piece.data.length < max) assert.ok(end === log.length || streams[end] !== piece.stream);
    }
    release();
    log.close();
  });

  it('wakes a follower only once the bytes are in the file', async () => {
    const log = OutputLog.create(dir);
    const release = log.acquire();
    const seen: number[] = [];
    const controller = new AbortController();
    const follow = (async () => {
      let offset = 0;
      while (offset < 5 * 100) {
        await log.waitForGrowth(offset, controller.signal);
        // At the moment of waking, the file holds at least what the reader is about to get.
        seen.push(statSync(join(dir, LOG_FILE)).size - log.length);
        const piece = await log.read(offset, 1 << 20);
        offset += piece.data.length;
      }
    })();
    for (let i = 0; i < 5; i++) {
      log.append('stdout', Buffer.alloc(100, 0x30 + i));
      await new Promise((resolve) => setImmediate(resolve));
    }
    await follow;
    assert.ok(seen.length > 0 && seen.every((d) => d === 0), `file size minus log length: ${seen}`);
    release();
    log.close();
  });

  it("wakes the agent's own readers after clients' followers, and leaves no waiter behind", async () => {
    const log = OutputLog.create(dir);
    const order: string[] = [];
    const controller = new AbortController();
    const background = log.waitForGrowth(0, controller.signal, { background: true }).then(() => {
      order.push('background');
    });
    const client = log.waitForGrowth(0, controller.signal).then(() => {
      order.push('client');
      // A client's follower sends within the turn; the background reader has not run yet.
      assert.deepEqual(order, ['client']);
    });
    assert.equal(log.waiting, 2);
    log.append('stdout', Buffer.from('x'));
    await Promise.all([client, background]);
    assert.deepEqual(order, ['client', 'background']);
    assert.equal(log.waiting, 0);

    // An abandoned background waiter is removed too.
    const gone = new AbortController();
    const abandoned = log.waitForGrowth(1, gone.signal, { background: true });
    assert.equal(log.waiting, 1);
    gone.abort();
    await abandoned;
    assert.equal(log.waiting, 0);
    log.close();
  });

  it('holds at most TAIL_BYTES and one append in memory, and nothing once no reader is left', () => {
    const log = OutputLog.create(dir);
    log.append('stdout', Buffer.alloc(50_000));
    assert.equal(log.keptBytes, 0, 'a log nobody reads keeps nothing in memory');
    const release = log.acquire();
    for (let i = 0; i < 100; i++) {
      log.append('stdout', Buffer.alloc(i % 2 === 0 ? 60_000 : 30));
      assert.ok(log.keptBytes <= TAIL_BYTES + 60_000, `${log.keptBytes} bytes kept`);
    }
    assert.ok(log.keptBytes > 0);
    release();
    assert.equal(log.keptBytes, 0, 'the last reader leaving frees the tail');
    const again = log.acquire();
    log.append('stdout', Buffer.alloc(10));
    log.close();
    assert.equal(log.keptBytes, 0, 'a closed log frees the tail');
    again();
  });

  it('reads bytes before a trimmed start as nothing, even while they are still in memory', async () => {
    const log = OutputLog.create(dir);
    const release = log.acquire();
    for (let i = 0; i < 10; i++) log.append('stdout', Buffer.alloc(100, 0x41 + i));
    await log.trimTo(500);
    assert.equal((await log.read(100, 50)).data.length, 0);
    const kept = await log.read(500, 50);
    assert.ok(kept.data.equals(Buffer.alloc(50, 0x46)));
    release();
    log.close();
    // Closed: the rest is read from the file.
    const again = OutputLog.openExisting(dir);
    const releaseAgain = again.acquire();
    assert.ok((await again.read(950, 100)).data.equals(Buffer.alloc(50, 0x4a)));
    releaseAgain();
  });
});

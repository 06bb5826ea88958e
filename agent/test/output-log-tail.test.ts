/**
 * The newest appends of an output log, kept in memory for readers that keep up (a serial
 * console): served from there byte for byte, bounded however the log is written, and dropped
 * once nobody reads.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOG_FILE, LOG_TAIL_BYTES, OutputLog } from '../src/output/output-log.js';

/** A buffer of its own (not a slice of Node's shared pool), so it counts only its bytes. */
function own(bytes: Buffer): Buffer {
  const b = Buffer.allocUnsafeSlow(bytes.length);
  bytes.copy(b);
  return b;
}

describe('output log tail in memory', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-log-tail-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('serves what a reader has not read yet from memory, and drops it when the last reader goes', async () => {
    const log = OutputLog.create(dir);
    const release = log.acquire();
    log.append('stdout', own(Buffer.from('login: root\n')));
    // The file no longer has the bytes: only memory can answer.
    truncateSync(join(dir, LOG_FILE), 0);
    assert.equal((await log.read(0, 1024)).data.toString(), 'login: root\n');
    assert.equal((await log.read(7, 1024)).data.toString(), 'root\n');
    assert.ok(log.memoryBytes > 0);
    release();
    assert.equal(log.memoryBytes, 0);
    // Written with nobody reading: nothing is kept.
    log.append('stdout', own(Buffer.from('more')));
    assert.equal(log.memoryBytes, 0);
    log.close();
  });

  it('stays within its bound and gives the same bytes as the file, across chunks and streams', async () => {
    const log = OutputLog.create(dir);
    const release = log.acquire();
    try {
      const written: Buffer[] = [];
      for (let i = 0; i < 300; i++) {
        const chunk = own(randomBytes(1 + ((i * 7919) % 4096)));
        log.append(i % 50 === 49 ? 'stderr' : 'stdout', chunk);
        written.push(chunk);
        assert.ok(log.memoryBytes <= LOG_TAIL_BYTES, `${log.memoryBytes} bytes kept after ${i + 1} appends`);
      }
      const all = Buffer.concat(written);
      assert.ok(all.length > 2 * LOG_TAIL_BYTES, 'the test writes past the tail');
      // Read everything back in odd-sized pieces, plainly and into given buffers: older bytes come
      // from the file, newer from memory, and a piece never crosses a change of stream.
      for (const into of [false, true]) {
        const pieces: Buffer[] = [];
        for (let offset = 0; offset < all.length; ) {
          const piece = await log.read(offset, 10_007, into ? (n) => Buffer.alloc(n) : undefined);
          assert.ok(piece.data.length > 0);
          const streamOf = (at: number): string => {
            let end = 0;
            for (let i = 0; i < written.length; i++) {
              end += written[i]!.length;
              if (at < end) return i % 50 === 49 ? 'stderr' : 'stdout';
            }
            return 'none';
          };
          assert.equal(piece.stream, streamOf(offset));
          assert.equal(streamOf(offset + piece.data.length - 1), piece.stream, 'a piece crossed streams');
          // Whole pieces, even from many small appends (a reader catching up), up to a stream change.
          let end = offset;
          while (end < all.length && end - offset < 10_007 && streamOf(end) === piece.stream) end++;
          assert.equal(piece.data.length, end - offset, `a short piece at ${offset}`);
          pieces.push(Buffer.from(piece.data));
          offset += piece.data.length;
        }
        assert.deepEqual(Buffer.concat(pieces), all);
      }
    } finally {
      release();
      log.close();
    }
  });

  it('does not keep a small chunk that would hold a big buffer alive', () => {
    const log = OutputLog.create(dir);
    const release = log.acquire();
    const big = Buffer.allocUnsafeSlow(4 * LOG_TAIL_BYTES);
    log.append('stdout', big.subarray(0, 10));
    assert.equal(log.memoryBytes, 0);
    log.append('stdout', own(Buffer.from('after')));
    assert.equal(log.memoryBytes, 5);
    release();
    log.close();
  });
  it("keeps another thread's reported appends that carry their bytes, and reads the file for the rest", async () => {
    const log = OutputLog.create(dir);
    const release = log.acquire();
    try {
      // What the output pump does: the bytes go into the file first, then the log is told.
      appendFileSync(join(dir, LOG_FILE), 'boot ok\nlogin: ');
      log.appended({
        length: 15,
        segments: [{ offset: 0, stream: 'stdout' }],
        data: new Uint8Array(Buffer.from('boot ok\nlogin: ')),
      });
      truncateSync(join(dir, LOG_FILE), 0);
      assert.equal((await log.read(8, 1024)).data.toString(), 'login: ', 'served from memory');
      assert.ok(log.memoryBytes > 0);
      // Too much to carry: the report names only the new length, and the tail starts over.
      writeFileSync(join(dir, LOG_FILE), Buffer.concat([Buffer.alloc(31), Buffer.from('bulk')]));
      log.appended({ length: 35, segments: [{ offset: 15, stream: 'stderr' }] });
      assert.equal(log.memoryBytes, 0);
      const piece = await log.read(31, 1024);
      assert.deepEqual([piece.data.toString(), piece.stream], ['bulk', 'stderr']);
      assert.throws(() => log.appended({ length: 10, segments: [] }), /cannot shrink/);
    } finally {
      release();
      log.close();
    }
  });
});

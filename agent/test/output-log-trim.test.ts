/**
 * An output log whose head is dropped in place (the bound of a live serial capture's log): the
 * disk blocks are freed, offsets stay what they were, readers behind the new start skip to it
 * and are told, and an agent that opens the log again sees the same start.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeChunk, encodeEvent } from '../../jig-drivers/src/serial-framing.js';
import { followSerial } from '../src/jig/serial-follow.js';
import { followLog } from '../src/output/follow-log.js';
import { OutputLog } from '../src/output/output-log.js';

const MIB = 1024 * 1024;

/** Everything a non-following reader gets from `offset`, and the skips it was told of. */
async function readAll(
  log: OutputLog,
  offset: number,
): Promise<{ data: Buffer; first: number; skips: number[][] }> {
  const pieces: Buffer[] = [];
  const skips: number[][] = [];
  let first = -1;
  await followLog({
    log,
    offset,
    follow: false,
    signal: new AbortController().signal,
    sink: {
      send(piece) {
        if (first < 0) first = piece.offset;
        pieces.push(piece.data);
        return true;
      },
      drained: async () => {},
    },
    onSkip: (from, to) => skips.push([from, to]),
  });
  return { data: Buffer.concat(pieces), first, skips };
}

describe('output log trimmed in place', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-trim-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('frees the blocks before the new start and keeps every later offset', async () => {
    const log = OutputLog.create(dir);
    const body = Buffer.alloc(4 * MIB);
    for (let i = 0; i < body.length; i++) body[i] = i % 251;
    log.append('stdout', body);
    const blocksBefore = statSync(join(dir, 'output.log')).blocks * 512;
    await log.trimTo(3 * MIB);
    assert.equal(log.start, 3 * MIB);
    assert.equal(log.length, 4 * MIB);
    assert.equal(log.storedBytes, 1 * MIB);
    const blocksAfter = statSync(join(dir, 'output.log')).blocks * 512;
    assert.ok(blocksBefore >= 4 * MIB, `before: ${blocksBefore}`);
    assert.ok(blocksAfter <= 1 * MIB + 8192, `the dropped head still takes ${blocksAfter} bytes`);
    assert.equal(statSync(join(dir, 'output.log')).size, 4 * MIB, 'the file keeps its size and offsets');

    const fromZero = await readAll(log, 0);
    assert.deepEqual(fromZero.skips, [[0, 3 * MIB]]);
    assert.equal(fromZero.first, 3 * MIB);
    assert.ok(fromZero.data.equals(body.subarray(3 * MIB)), 'the bytes kept are the original ones');
    const fromMiddle = await readAll(log, 3 * MIB + 10);
    assert.deepEqual(fromMiddle.skips, []);
    assert.ok(fromMiddle.data.equals(body.subarray(3 * MIB + 10)));
    log.close();
  });

  it('keeps the start across a reopen, and treats a damaged start file as nothing kept', async () => {
    const log = OutputLog.create(dir);
    log.append('stdout', Buffer.alloc(2 * MIB, 0x61));
    await log.trimTo(MIB);
    log.append('stdout', Buffer.from('tail'));
    log.close();
    const again = OutputLog.openExisting(dir);
    assert.equal(again.start, MIB);
    assert.equal((await readAll(again, 0)).data.length, MIB + 4);

    writeFileSync(join(dir, 'output.start'), '{garbled');
    const damaged = OutputLog.openExisting(dir);
    assert.equal(damaged.start, damaged.length, 'zeros of a freed range must never be served as output');
    assert.equal((await readAll(damaged, 0)).data.length, 0);
  });

  it('refuses to trim past the end and ignores a trim behind the start', async () => {
    const log = OutputLog.create(dir);
    log.append('stdout', Buffer.alloc(1000));
    await assert.rejects(log.trimTo(2000), RangeError);
    await log.trimTo(500);
    await log.trimTo(100);
    assert.equal(log.start, 500);
    log.close();
  });

  it('a serial reader behind the start resumes at a record boundary and is told what it missed', async () => {
    const log = OutputLog.create(dir);
    const records = [encodeEvent(1, 'open', '/dev/ttyUSB0')];
    for (let i = 0; i < 100; i++) records.push(encodeChunk(1000 + i, Buffer.from(`line ${i}\r\n`)));
    let boundary = 0;
    for (const [i, r] of records.entries()) {
      if (i === 50) boundary = log.length;
      log.append('stdout', r);
    }
    await log.trimTo(boundary);
    const got: string[] = [];
    await followSerial({
      log,
      from: 0,
      follow: false,
      signal: new AbortController().signal,
      onRecord(record) {
        got.push(record.kind === 'chunk' ? record.data.toString() : `!${record.event}@${record.nextOffset}`);
        return true;
      },
      drained: async () => {},
    });
    assert.equal(got[0], `!trimmed@${boundary}`);
    assert.equal(got[1], 'line 49\r\n');
    assert.equal(got.at(-1), 'line 99\r\n');
    assert.equal(got.length, 1 + 51);
    log.close();
  });
});

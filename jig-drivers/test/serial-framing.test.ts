import assert from 'node:assert/strict';
import { encodeChunk, encodeEvent, SerialRecordDecoder } from '../src/serial-framing.js';

describe('serial record positions', () => {
  it('gives each record its place in the log however the bytes are cut', () => {
    const records = [
      encodeChunk(1, Buffer.from('hello\r\n')),
      encodeEvent(2, 'gone', '/dev/ttyUSB0 vanished'),
      encodeChunk(3, Buffer.alloc(0)),
      encodeChunk(4, Buffer.from([0, 0x0a, 0xff])),
    ];
    const all = Buffer.concat(records);
    const expected: [number, number][] = [];
    let at = 100;
    for (const r of records) {
      expected.push([at, at + r.length]);
      at += r.length;
    }
    for (let cut = 0; cut <= all.length; cut++) {
      const decoder = new SerialRecordDecoder(100);
      const got = [
        ...decoder.pushPositioned(all.subarray(0, cut)),
        ...decoder.pushPositioned(all.subarray(cut)),
      ];
      assert.deepEqual(
        got.map((r) => [r.offset, r.nextOffset]),
        expected,
        `cut at ${cut}`,
      );
      assert.ok(decoder.idle);
    }
  });
});

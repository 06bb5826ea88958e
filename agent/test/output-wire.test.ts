/** StreamOutput's hand-made chunk encoding reads back as the same message, byte for byte. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { OutputStream, StreamOutputResponse } from '../../protocol/gen/jiglet/v1/jobs.js';
import { encodeStreamOutputResponse } from '../src/rpc/output-wire.js';

describe('StreamOutput wire encoding', () => {
  it('encodes chunks exactly as the generated encoder does', () => {
    const cases: StreamOutputResponse[] = [
      { chunk: { offset: 0n, data: Buffer.alloc(0), stream: OutputStream.OUTPUT_STREAM_UNSPECIFIED } },
      { chunk: { offset: 1n, data: Buffer.from('x'), stream: OutputStream.OUTPUT_STREAM_STDOUT } },
      { chunk: { offset: 127n, data: randomBytes(128), stream: OutputStream.OUTPUT_STREAM_STDERR } },
      {
        chunk: {
          offset: 2n ** 40n + 5n,
          data: randomBytes(512 * 1024),
          stream: OutputStream.OUTPUT_STREAM_STDOUT,
        },
      },
      {
        chunk: { offset: 2n ** 53n - 1n, data: randomBytes(300), stream: OutputStream.OUTPUT_STREAM_STDERR },
      },
    ];
    for (const msg of cases) {
      const fast = encodeStreamOutputResponse(msg);
      assert.deepEqual(fast, Buffer.from(StreamOutputResponse.encode(msg).finish()));
      const back = StreamOutputResponse.decode(fast);
      assert.equal(back.chunk?.offset, msg.chunk?.offset);
      assert.deepEqual(Buffer.from(back.chunk?.data ?? []), Buffer.from(msg.chunk?.data ?? []));
    }
  });

  it('leaves other messages to the generated encoder', () => {
    const msg: StreamOutputResponse = { chunk: { offset: 2n ** 60n, data: Buffer.from('y'), stream: 1 } };
    assert.deepEqual(encodeStreamOutputResponse(msg), Buffer.from(StreamOutputResponse.encode(msg).finish()));
  });
});

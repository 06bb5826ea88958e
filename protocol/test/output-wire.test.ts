/** StreamOutput's hand-made chunk coding: the same bytes and messages as the generated code. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { OutputStream, StreamOutputResponse } from '../gen/jiglet/v1/jobs.js';
import { decodeStreamOutputResponse, encodeStreamOutputResponse, outputPiece } from '../src/output-wire.js';

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

  it('decodes what the generated encoder writes, chunk data as a view of the message', () => {
    const job = { id: 'job-1', owner: 'ci', exitCode: 0, stopReason: 'request' };
    const cases: StreamOutputResponse[] = [
      { chunk: { offset: 0n, data: Buffer.alloc(0), stream: OutputStream.OUTPUT_STREAM_UNSPECIFIED } },
      { chunk: { offset: 300n, data: randomBytes(200_000), stream: OutputStream.OUTPUT_STREAM_STDERR } },
      {
        chunk: { offset: 2n ** 53n - 1n, data: Buffer.from('z'), stream: OutputStream.OUTPUT_STREAM_STDOUT },
      },
      // Past the fast path: an offset beyond 2^53, and the final record.
      { chunk: { offset: 2n ** 60n, data: Buffer.from('y'), stream: 1 } },
      StreamOutputResponse.fromPartial({ finished: job }),
    ];
    for (const msg of cases) {
      const bytes = Buffer.from(StreamOutputResponse.encode(msg).finish());
      const decoded = decodeStreamOutputResponse(bytes);
      assert.deepEqual(
        StreamOutputResponse.toJSON(decoded),
        StreamOutputResponse.toJSON(StreamOutputResponse.decode(bytes)),
      );
    }
    const bytes = encodeStreamOutputResponse(cases[1]!);
    const data = decodeStreamOutputResponse(bytes).chunk!.data;
    assert.equal(data.buffer, bytes.buffer, 'no copy of the data');
    // A small chunk cut out of a big buffer (several messages in one network read) is copied,
    // so keeping it does not keep the whole read.
    const line = encodeStreamOutputResponse({
      chunk: { offset: 9n, data: Buffer.from('login: '), stream: 1 },
    });
    const read = Buffer.concat([Buffer.alloc(64 * 1024), line]);
    const kept = decodeStreamOutputResponse(read.subarray(read.length - line.length)).chunk!.data;
    assert.equal(kept.toString(), 'login: ');
    assert.notEqual(kept.buffer, read.buffer);
  });

  it('sends a piece encoded in advance as it is, once its data is filled in', () => {
    for (const [offset, length, stream] of [
      [0, 1, OutputStream.OUTPUT_STREAM_STDOUT],
      [2 ** 40 + 3, 128 * 1024, OutputStream.OUTPUT_STREAM_STDERR],
    ] as const) {
      const piece = outputPiece(offset, length, stream);
      const data = randomBytes(length);
      piece.chunk.data.set(data);
      const bytes = encodeStreamOutputResponse(piece);
      const plain = { chunk: { offset: BigInt(offset), data, stream } };
      assert.deepEqual(bytes, Buffer.from(StreamOutputResponse.encode(plain).finish()));
      assert.equal(piece.chunk.data.buffer, bytes.buffer, 'the data was filled in place, not copied');
      assert.deepEqual(decodeStreamOutputResponse(bytes).chunk?.data, data);
    }
  });

  it('hands malformed or unusual chunks to the generated decoder, which decides', () => {
    const good = encodeStreamOutputResponse({ chunk: { offset: 5n, data: Buffer.from('abc'), stream: 2 } });
    // The same field twice: protobuf keeps the last one; the generated decoder knows that.
    const twice = Buffer.concat([
      good.subarray(0, 1),
      Buffer.from([good[1]! + 2]),
      good.subarray(2),
      Buffer.from([8, 9]),
    ]);
    assert.equal(decodeStreamOutputResponse(twice).chunk?.offset, 9n);
    // A length that runs past the message is an error, as in the generated decoder.
    const cut = good.subarray(0, good.length - 1);
    assert.throws(() => decodeStreamOutputResponse(cut));
    assert.throws(() => StreamOutputResponse.decode(cut));
  });
});

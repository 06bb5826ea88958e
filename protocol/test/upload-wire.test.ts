/** UploadImage's hand-made data coding: the same bytes and messages as the generated code. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { UploadImageRequest } from '../gen/jiglet/v1/images.js';
import { decodeUploadImageRequest, encodeUploadImageRequest, uploadPiece } from '../src/upload-wire.js';

const cases: UploadImageRequest[] = [
  { data: { offset: 0n, data: Buffer.alloc(0) } },
  { data: { offset: 0n, data: randomBytes(1024 * 1024) } },
  { data: { offset: 5n * 2n ** 30n, data: randomBytes(300) } },
  { data: { offset: 2n ** 53n - 1n, data: Buffer.from('z') } },
  // Past the fast path: an offset beyond 2^53, and the start message.
  { data: { offset: 2n ** 60n, data: Buffer.from('y') } },
  { start: { sha256: 'ab'.repeat(32), size: 1234n, name: 'os.img.gz' } },
];

describe('UploadImage wire encoding', () => {
  it('encodes every request exactly as the generated encoder does', () => {
    for (const msg of cases)
      assert.deepEqual(encodeUploadImageRequest(msg), Buffer.from(UploadImageRequest.encode(msg).finish()));
  });

  it('decodes what the generated encoder writes, the data as a view of the message', () => {
    for (const msg of cases) {
      const bytes = Buffer.from(UploadImageRequest.encode(msg).finish());
      assert.deepEqual(
        UploadImageRequest.toJSON(decodeUploadImageRequest(bytes)),
        UploadImageRequest.toJSON(UploadImageRequest.decode(bytes)),
      );
    }
    const bytes = encodeUploadImageRequest(cases[1]!);
    assert.equal(decodeUploadImageRequest(bytes).data!.data.buffer, bytes.buffer, 'no copy of the data');
  });

  it('hands repeated fields and cut messages to the generated decoder, which decides', () => {
    const good = encodeUploadImageRequest({ data: { offset: 7n, data: Buffer.from('abc') } });
    const twice = Buffer.concat([Buffer.from([18, good[1]! + 2]), good.subarray(2), Buffer.from([8, 9])]);
    assert.equal(decodeUploadImageRequest(twice).data?.offset, 9n);
    const cut = good.subarray(0, good.length - 1);
    assert.throws(() => decodeUploadImageRequest(cut));
  });

  it('sends a piece encoded in advance as it is, the same bytes as the generated encoder', () => {
    for (const [offset, length] of [
      [0, 0],
      [0, 5],
      [3 * 2 ** 20, 2 ** 20],
      [2 ** 53 - 1, 1],
    ] as const) {
      const piece = uploadPiece(offset, length);
      assert.equal(piece.data.data.length, length);
      randomBytes(length).copy(piece.data.data);
      const bytes = encodeUploadImageRequest(piece);
      assert.deepEqual(
        bytes,
        Buffer.from(
          UploadImageRequest.encode({ data: { offset: BigInt(offset), data: piece.data.data } }).finish(),
        ),
      );
      assert.equal(bytes.buffer, piece.data.data.buffer, 'no copy of the data');
      assert.deepEqual(decodeUploadImageRequest(bytes).data?.data, piece.data.data);
    }
  });
});

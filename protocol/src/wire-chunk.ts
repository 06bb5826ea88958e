/**
 * The protobuf layout the hand-written codecs (output-wire.ts, upload-wire.ts) share: a message
 * holding one sub-message of an offset, a run of bytes and an optional small number (an output
 * chunk's stream), and the varints in it. Values are non-negative safe integers, which covers
 * every offset and length jiglet sends.
 */

/** Bytes of `value` as a varint. */
function varintLength(value: number): number {
  let n = 1;
  for (let v = value; v >= 0x80; v = Math.floor(v / 0x80)) n++;
  return n;
}

/** Writes `value` at `pos`; returns the position after it. */
function putVarint(buf: Uint8Array, pos: number, value: number): number {
  let v = value;
  let p = pos;
  while (v >= 0x80) {
    buf[p++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  buf[p++] = v;
  return p;
}

/**
 * Encodes `{ <outerTag>: { 1: offset, 2: <length bytes>, 3: trailer } }` as the generated encoders
 * do (fields in order, a zero left out), and returns it with the position of the data bytes,
 * which the caller fills (copying them in, or reading a file straight into them).
 */
export function encodeChunkMessage(
  outerTag: number,
  offset: number,
  length: number,
  trailer = 0,
): { out: Buffer; dataAt: number } {
  const inner =
    (offset !== 0 ? 1 + varintLength(offset) : 0) +
    (length !== 0 ? 1 + varintLength(length) + length : 0) +
    (trailer !== 0 ? 1 + varintLength(trailer) : 0);
  const out = Buffer.allocUnsafe(1 + varintLength(inner) + inner);
  let p = 0;
  out[p++] = outerTag;
  p = putVarint(out, p, inner);
  if (offset !== 0) {
    out[p++] = 8; // field 1, varint
    p = putVarint(out, p, offset);
  }
  if (length !== 0) {
    out[p++] = 18; // field 2, length-delimited
    p = putVarint(out, p, length);
  }
  const dataAt = p;
  if (trailer !== 0) {
    out[dataAt + length] = 24; // field 3, varint
    putVarint(out, dataAt + length + 1, trailer);
  }
  return { out, dataAt };
}

/** Reads a varint at `pos`: [value, next position], or undefined past `end` or beyond 2^53. */
export function getVarint(buf: Uint8Array, pos: number, end: number): [number, number] | undefined {
  let value = 0;
  let scale = 1;
  for (let p = pos; p < end && scale <= 2 ** 49; p++) {
    const byte = buf[p]!;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return Number.isSafeInteger(value) ? [value, p + 1] : undefined;
    scale *= 0x80;
  }
  return undefined;
}

/**
 * Reads the fields of a message whose fields are all varints or length-delimited, each at most
 * once and each listed in `tags` (the field's tag byte: number << 3 | wire type). Returns the
 * varints' values and the byte ranges' views by tag, or undefined for anything else (unknown or
 * repeated fields, a bad length), which the caller leaves to the generated decoder.
 */
export function readFlatFields(
  buf: Buffer,
  start: number,
  end: number,
  tags: readonly number[],
): Map<number, number | Buffer> | undefined {
  const fields = new Map<number, number | Buffer>();
  let p = start;
  while (p < end) {
    const tag = buf[p++]!;
    if (!tags.includes(tag) || fields.has(tag)) return undefined;
    const v = getVarint(buf, p, end);
    if (!v) return undefined;
    p = v[1];
    if ((tag & 7) === 0) {
      fields.set(tag, v[0]);
    } else {
      if (p + v[0] > end) return undefined;
      fields.set(tag, buf.subarray(p, p + v[0]));
      p += v[0];
    }
  }
  return fields;
}

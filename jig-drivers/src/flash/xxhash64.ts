/**
 * XXH64 (xxHash spec 0.1.1), streaming, seed 0 — the hash behind zstd's frame content checksum.
 * fzstd skips that checksum, so a .zst whose stored (incompressible) blocks were damaged would
 * decompress "fine" into wrong data; checking it makes zstd as safe as gzip's CRC32 and xz's CRC64.
 * 64-bit values are kept as two uint32 halves (BigInt is ~20x slower); a 32x32-bit product is
 * formed from two 32x16-bit products, which are exact in a double.
 */

const TWO_32 = 2 ** 32;

// The primes as [high, low] uint32 halves.
const P1 = [0x9e3779b1, 0x85ebca87] as const;
const P2 = [0xc2b2ae3d, 0x27d4eb4f] as const;
const P3 = [0x165667b1, 0x9e3779f9] as const;
const P4 = [0x85ebca77, 0xc2b2ae63] as const;
const P5 = [0x27d4eb2f, 0x165667c5] as const;

// Halves and 16-bit pieces of the primes the stripe loop multiplies by, as plain constants.
const P1_HIGH = 0x9e3779b1;
const P1_LOW = 0x85ebca87;
const P1_LOW_HI16 = P1_LOW >>> 16;
const P1_LOW_LO16 = P1_LOW & 0xffff;
const P2_HIGH = 0xc2b2ae3d;
const P2_LOW = 0x27d4eb4f;
const P2_LOW_HI16 = P2_LOW >>> 16;
const P2_LOW_LO16 = P2_LOW & 0xffff;

/** Scratch registers: out[0] = high, out[1] = low of the last operation's result. */
const out = new Uint32Array(2);

/** out = (ah:al) * (bh:bl) mod 2^64. */
function mul(ah: number, al: number, bh: number, bl: number): void {
  const high = al * (bl >>> 16); // < 2^48: exact
  const highRest = (high >>> 0) & 0xffff; // high mod 2^16 (>>> 0 is an exact mod 2^32)
  const sum = al * (bl & 0xffff) + highRest * 65536; // < 2^49: exact
  const low = sum >>> 0;
  out[1] = low;
  // A Uint32Array store is itself a mod 2^32.
  out[0] = Math.imul(ah, bl) + Math.imul(al, bh) + (sum - low) / TWO_32 + (high - highRest) / 65536;
}

/** out = (ah:al) + (bh:bl) mod 2^64. */
function add(ah: number, al: number, bh: number, bl: number): void {
  const sum = al + bl;
  out[1] = sum;
  out[0] = ah + bh + (sum >= TWO_32 ? 1 : 0);
}

/** out = rotl(h:l, n), 0 < n < 32. */
function rotl(h: number, l: number, n: number): void {
  out[0] = (h << n) | (l >>> (32 - n));
  out[1] = (l << n) | (h >>> (32 - n));
}

/** state[k..k+1] = rotl(state[k..k+1] + (ih:il) * P2, 31) * P1: XXH64's round. */
function round(state: Uint32Array, k: number, ih: number, il: number): void {
  mul(ih, il, P2[0], P2[1]);
  add(state[k]!, state[k + 1]!, out[0]!, out[1]!);
  rotl(out[0]!, out[1]!, 31);
  mul(out[0]!, out[1]!, P1[0], P1[1]);
  state[k] = out[0]!;
  state[k + 1] = out[1]!;
}

/** A streaming XXH64 with seed 0. */
export class Xxh64 {
  /** Lanes v1..v4 as hi/lo pairs, initialised for seed 0 (v1 = P1 + P2, v2 = P2, v3 = 0, v4 = -P1). */
  private readonly lanes = new Uint32Array([
    0x60ea27ee, 0xadc0b5d6, 0xc2b2ae3d, 0x27d4eb4f, 0, 0, 0x61c8864e, 0x7a143579,
  ]);
  /** Bytes of an incomplete 32-byte stripe, kept 4-byte aligned for the word view. */
  private readonly pending = new Uint8Array(32);
  private pendingBytes = 0;
  private total = 0;

  /** Hashes `data` after what came before. */
  update(data: Uint8Array): this {
    this.total += data.byteLength;
    let at = 0;
    if (this.pendingBytes > 0) {
      const take = Math.min(32 - this.pendingBytes, data.byteLength);
      this.pending.set(data.subarray(0, take), this.pendingBytes);
      this.pendingBytes += take;
      at = take;
      if (this.pendingBytes < 32) return this;
      this.stripes(new Uint32Array(this.pending.buffer, 0, 8));
      this.pendingBytes = 0;
    }
    const whole = (data.byteLength - at) & ~31;
    if (whole > 0) {
      const start = data.byteOffset + at;
      // A Uint32Array view needs 4-byte alignment; copying an unaligned chunk costs a memcpy.
      const words =
        start % 4 === 0
          ? new Uint32Array(data.buffer, start, whole / 4)
          : new Uint32Array(data.slice(at, at + whole).buffer);
      this.stripes(words);
      at += whole;
    }
    this.pending.set(data.subarray(at), 0);
    this.pendingBytes = data.byteLength - at;
    return this;
  }

  /** Consumes whole 32-byte stripes (little-endian words: low half first, as on every host we run on). */
  private stripes(words: Uint32Array): void {
    const lanes = this.lanes;
    for (let k = 0; k < 8; k += 2) {
      // One lane at a time through all stripes keeps its two halves in registers (~2.5x faster).
      let h = lanes[k]!;
      let l = lanes[k + 1]!;
      for (let i = k; i < words.length; i += 8) {
        const il = words[i]!;
        const ih = words[i + 1]!;
        // t = input * P2
        let high = il * P2_LOW_HI16;
        let highRest = (high >>> 0) & 0xffff;
        let sum = il * P2_LOW_LO16 + highRest * 65536;
        const tl = sum >>> 0;
        const th =
          (Math.imul(ih, P2_LOW) +
            Math.imul(il, P2_HIGH) +
            (sum - tl) / TWO_32 +
            (high - highRest) / 65536) >>>
          0;
        // acc += t
        sum = l + tl;
        const al = sum >>> 0;
        const ah = (h + th + (sum >= TWO_32 ? 1 : 0)) >>> 0;
        // rotl 31
        const rh = ((ah << 31) | (al >>> 1)) >>> 0;
        const rl = ((al << 31) | (ah >>> 1)) >>> 0;
        // acc = r * P1
        high = rl * P1_LOW_HI16;
        highRest = (high >>> 0) & 0xffff;
        sum = rl * P1_LOW_LO16 + highRest * 65536;
        l = sum >>> 0;
        h =
          (Math.imul(rh, P1_LOW) +
            Math.imul(rl, P1_HIGH) +
            (sum - l) / TWO_32 +
            (high - highRest) / 65536) >>>
          0;
      }
      lanes[k] = h;
      lanes[k + 1] = l;
    }
  }

  /** The low 32 bits of the digest: what a zstd frame stores. */
  digestLow32(): number {
    return this.digest()[1];
  }

  /** The digest as [high, low] uint32 halves; the state is not changed. */
  digest(): [number, number] {
    const acc = new Uint32Array(2);
    if (this.total >= 32) this.mergeLanes(acc);
    else acc.set(P5);
    add(acc[0]!, acc[1]!, Math.floor(this.total / TWO_32), this.total >>> 0);
    let h = out[0]!;
    let l = out[1]!;
    const rest = Buffer.from(this.pending.buffer, 0, this.pendingBytes);
    let at = 0;
    const lane = new Uint32Array(2);
    for (; at + 8 <= rest.length; at += 8) {
      lane.fill(0);
      round(lane, 0, rest.readUInt32LE(at + 4), rest.readUInt32LE(at));
      rotl(h ^ lane[0]!, l ^ lane[1]!, 27);
      mul(out[0]!, out[1]!, P1[0], P1[1]);
      add(out[0]!, out[1]!, P4[0], P4[1]);
      h = out[0]!;
      l = out[1]!;
    }
    if (at + 4 <= rest.length) {
      mul(0, rest.readUInt32LE(at), P1[0], P1[1]);
      rotl(h ^ out[0]!, l ^ out[1]!, 23);
      mul(out[0]!, out[1]!, P2[0], P2[1]);
      add(out[0]!, out[1]!, P3[0], P3[1]);
      h = out[0]!;
      l = out[1]!;
      at += 4;
    }
    for (; at < rest.length; at++) {
      mul(0, rest[at]!, P5[0], P5[1]);
      rotl(h ^ out[0]!, l ^ out[1]!, 11);
      mul(out[0]!, out[1]!, P1[0], P1[1]);
      h = out[0]!;
      l = out[1]!;
    }
    // Avalanche: h ^= h >> 33; h *= P2; h ^= h >> 29; h *= P3; h ^= h >> 32.
    mul(h, (l ^ (h >>> 1)) >>> 0, P2[0], P2[1]);
    h = out[0]!;
    l = out[1]!;
    mul((h ^ (h >>> 29)) >>> 0, (l ^ ((l >>> 29) | (h << 3))) >>> 0, P3[0], P3[1]);
    return [out[0]!, (out[1]! ^ out[0]!) >>> 0];
  }

  /** acc = the four lanes folded into one (inputs of 32 bytes or more). */
  private mergeLanes(acc: Uint32Array): void {
    const lanes = this.lanes;
    const shifts = [1, 7, 12, 18];
    for (let k = 0; k < 4; k++) {
      rotl(lanes[k * 2]!, lanes[k * 2 + 1]!, shifts[k]!);
      add(acc[0]!, acc[1]!, out[0]!, out[1]!);
      acc.set(out);
    }
    const lane = new Uint32Array(2);
    for (let k = 0; k < 4; k++) {
      lane.fill(0);
      round(lane, 0, lanes[k * 2]!, lanes[k * 2 + 1]!);
      mul((acc[0]! ^ lane[0]!) >>> 0, (acc[1]! ^ lane[1]!) >>> 0, P1[0], P1[1]);
      add(out[0]!, out[1]!, P4[0], P4[1]);
      acc.set(out);
    }
  }
}

/** XXH64 of `data` (seed 0) as 16 hex digits. */
export function xxh64Hex(data: Uint8Array): string {
  const [high, low] = new Xxh64().update(data).digest();
  return high.toString(16).padStart(8, '0') + low.toString(16).padStart(8, '0');
}

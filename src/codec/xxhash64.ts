/**
 * XXH64 (the zstd frame checksum: its low 32 bits, seed 0), written from the xxHash spec.
 * fzstd does not verify frame checksums, so the streaming zstd path hashes its output here.
 * The 32-byte stripe loop works on 32-bit halves (Math.imul and 16-bit partial products):
 * BigInt would be ~20 MB/s; the once-per-frame tail and finish use BigInt for clarity.
 */
const M64 = (1n << 64n) - 1n;
const P1 = 0x9e3779b185ebca87n;
const P2 = 0xc2b2ae3d27d4eb4fn;
const P3 = 0x165667b19e3779f9n;
const P4 = 0x85ebca77c2b2ae63n;
const P5 = 0x27d4eb2f165667c5n;
const P1H = 0x9e3779b1;
const P1L = 0x85ebca87;
const P2H = 0xc2b2ae3d;
const P2L = 0x27d4eb4f;

/** High 32 bits of the 64-bit product of two uint32. */
function mulHi(a: number, b: number): number {
  const a0 = a & 0xffff;
  const a1 = a >>> 16;
  const b0 = b & 0xffff;
  const b1 = b >>> 16;
  const m1 = a1 * b0;
  const m2 = a0 * b1;
  const t = ((a0 * b0) >>> 16) + (m1 & 0xffff) + (m2 & 0xffff);
  return (a1 * b1 + (m1 >>> 16) + (m2 >>> 16) + Math.floor(t / 65536)) >>> 0;
}

const rotl = (x: bigint, r: bigint) => ((x << r) | (x >> (64n - r))) & M64;
const round = (acc: bigint, lane: bigint) => (rotl((acc + lane * P2) & M64, 31n) * P1) & M64;

export class Xxh64 {
  /** Four accumulators as [hi, lo] pairs. */
  private readonly v = new Uint32Array(8);
  private readonly tail = new Uint8Array(32);
  private tailLength = 0;
  private total = 0;

  constructor() {
    const init = [(P1 + P2) & M64, P2, 0n, -P1 & M64];
    init.forEach((x, i) => {
      this.v[2 * i] = Number(x >> 32n);
      this.v[2 * i + 1] = Number(x & 0xffffffffn);
    });
  }

  update(data: Uint8Array): void {
    this.total += data.length;
    let pos = 0;
    if (this.tailLength > 0) {
      const take = Math.min(32 - this.tailLength, data.length);
      this.tail.set(data.subarray(0, take), this.tailLength);
      this.tailLength += take;
      pos = take;
      if (this.tailLength < 32) return;
      this.stripes(this.tail, 0, 32);
      this.tailLength = 0;
    }
    const whole = pos + Math.floor((data.length - pos) / 32) * 32;
    this.stripes(data, pos, whole);
    this.tail.set(data.subarray(whole));
    this.tailLength = data.length - whole;
  }

  /** acc = rotl(acc + lane × P2, 31) × P1 for each 8-byte lane of data[from, to). */
  private stripes(data: Uint8Array, from: number, to: number): void {
    const v = this.v;
    for (let p = from; p < to; p += 32) {
      for (let i = 0; i < 4; i++) {
        const q = p + 8 * i;
        const ll =
          (data[q]! | (data[q + 1]! << 8) | (data[q + 2]! << 16) | (data[q + 3]! << 24)) >>> 0;
        const lh =
          (data[q + 4]! | (data[q + 5]! << 8) | (data[q + 6]! << 16) | (data[q + 7]! << 24)) >>> 0;
        // lane × P2 (mod 2^64)
        let ml = Math.imul(ll, P2L) >>> 0;
        let mh = (mulHi(ll, P2L) + Math.imul(lh, P2L) + Math.imul(ll, P2H)) >>> 0;
        // acc + that
        const sl = v[2 * i + 1]! + ml;
        const sh = (v[2 * i]! + mh + (sl > 0xffffffff ? 1 : 0)) >>> 0;
        const al = sl >>> 0;
        // rotl 31: (h, l) -> (h << 31 | l >>> 1, l << 31 | h >>> 1)
        const rh = ((sh << 31) | (al >>> 1)) >>> 0;
        const rl = ((al << 31) | (sh >>> 1)) >>> 0;
        // × P1
        ml = Math.imul(rl, P1L) >>> 0;
        mh = (mulHi(rl, P1L) + Math.imul(rh, P1L) + Math.imul(rl, P1H)) >>> 0;
        v[2 * i] = mh;
        v[2 * i + 1] = ml;
      }
    }
  }

  /** The full 64-bit digest. */
  digest(): bigint {
    const acc = [0, 1, 2, 3].map(
      (i) => (BigInt(this.v[2 * i]!) << 32n) | BigInt(this.v[2 * i + 1]!),
    );
    let h: bigint;
    if (this.total >= 32) {
      const [a, b, c, d] = acc as [bigint, bigint, bigint, bigint];
      h = (rotl(a, 1n) + rotl(b, 7n) + rotl(c, 12n) + rotl(d, 18n)) & M64;
      for (const x of acc) h = ((h ^ round(0n, x)) * P1 + P4) & M64;
    } else h = P5;
    h = (h + BigInt(this.total)) & M64;
    const t = this.tail;
    const dv = new DataView(t.buffer, t.byteOffset, this.tailLength);
    let p = 0;
    for (; p + 8 <= this.tailLength; p += 8) {
      h ^= round(0n, dv.getBigUint64(p, true));
      h = (rotl(h, 27n) * P1 + P4) & M64;
    }
    if (p + 4 <= this.tailLength) {
      h ^= (BigInt(dv.getUint32(p, true)) * P1) & M64;
      h = (rotl(h, 23n) * P2 + P3) & M64;
      p += 4;
    }
    for (; p < this.tailLength; p++) {
      h ^= (BigInt(t[p]!) * P5) & M64;
      h = (rotl(h, 11n) * P1) & M64;
    }
    h ^= h >> 33n;
    h = (h * P2) & M64;
    h ^= h >> 29n;
    h = (h * P3) & M64;
    h ^= h >> 32n;
    return h;
  }
}

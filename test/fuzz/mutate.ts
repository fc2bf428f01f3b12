/**
 * Deterministic mutations of an image file for the format fuzzer: a seeded PRNG and the
 * mutators (byte flips, boundary values in 4/8-byte fields, truncation, zeroed and duplicated
 * table blocks, appended bytes, rewritten file references). Every mutation is described in
 * words so a failure can be read and reproduced from its seed.
 */

/** A byte range [start, end) of the image file. */
export interface Span {
  start: number;
  end: number;
}

/** sfc32: small, fast and good enough to spread mutations; seeded from a string. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 12; i++) this.next();
  }

  next(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    if (n <= 1) return 0;
    if (n <= 0x100000000) return Math.floor((this.next() / 0x100000000) * n);
    return Math.floor(((this.next() * 0x100000000 + this.next()) / 2 ** 64) * n);
  }

  chance(p: number): boolean {
    return this.next() / 0x100000000 < p;
  }

  pick<T>(list: readonly T[]): T {
    return list[this.int(list.length)]!;
  }
}

/** FNV-1a, to turn "seed/target/iteration" into a case seed. */
export function hashSeed(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Where a file name is stored in an image. */
export interface Reference extends Span {
  utf16: boolean;
}

/** Where mutations aim, and what the format needs to stay interesting after them. */
export interface MutationPlan {
  /** Headers and tables located from the format's own headers. */
  hot: Span[];
  /** File bytes that hold no guest data (the complement of qemu-img map's data ranges). */
  meta: Span[];
  /** File references stored in the image (names of sibling files, maybe in UTF-16LE). */
  refs: Reference[];
  /** Byte order of the format's fields (VHD is big-endian). */
  bigEndian: boolean;
  /** The file is text (a VMDK descriptor): numbers, words and lines are mutated as such. */
  text: boolean;
  /** Words of the format's text to swap in (extent types, keys), and lines to insert. */
  words: string[];
  /** References that leave the image's directory, each as bytes of a given length. */
  hostile: (length: number) => string[];
}

export interface Mutated {
  bytes: Uint8Array;
  steps: string[];
}

const hex = (n: number | bigint) => `0x${n.toString(16)}`;

/** Decimal numbers for text formats: limits of u32, u64 and exact doubles. */
const NUMBERS = [
  '0',
  '1',
  '511',
  '4294967295',
  '4294967296',
  '9007199254740991',
  '9007199254740993',
  '18446744073709551615',
  '99999999999999999999999',
];

/** Values that break size and offset arithmetic. */
const BOUNDARIES: readonly bigint[] = [
  0n,
  1n,
  2n,
  3n,
  5n,
  6n,
  7n,
  0x1ffn,
  0x200n,
  0x7fffffffn,
  0x80000000n,
  0xfffffffen,
  0xffffffffn,
  0x100000000n,
  2n ** 53n,
  2n ** 53n + 1n,
  2n ** 63n,
  2n ** 64n - 1n,
];

/** Applies 1-4 stacked mutations to a copy of `pristine`. */
export function mutate(pristine: Uint8Array, plan: MutationPlan, rng: Rng): Mutated {
  const m = new Mutator(pristine, plan, rng);
  const count = 1 + (rng.chance(0.5) ? 0 : rng.int(4));
  for (let i = 0; i < count; i++) m.one();
  return { bytes: m.bytes, steps: m.steps };
}

class Mutator {
  bytes: Uint8Array;
  readonly steps: string[] = [];

  constructor(
    pristine: Uint8Array,
    private readonly plan: MutationPlan,
    private readonly rng: Rng,
  ) {
    this.bytes = Uint8Array.from(pristine);
  }

  one(): void {
    const r = this.rng;
    const roll = r.int(100);
    if (this.plan.text && r.chance(0.4)) this.textual();
    else if (this.plan.refs.length > 0 && roll < 8) this.reference();
    else if (roll < 30) this.flip();
    else if (roll < 35) this.fanOut();
    else if (roll < 65) this.field();
    else if (roll < 77) this.truncate();
    else if (roll < 85) this.zeroBlock();
    else if (roll < 93) this.duplicateBlock();
    else if (roll < 97) this.randomRun();
    else this.extend();
  }

  /** A position: mostly in located headers/tables, sometimes any metadata, rarely anywhere. */
  private position(): number {
    const r = this.rng;
    const size = this.bytes.length;
    const roll = r.int(100);
    const spans = roll < 65 ? this.plan.hot : roll < 90 ? this.plan.meta : [];
    const inside = spans.filter((s) => s.start < size && s.end > s.start);
    if (inside.length === 0) return r.int(Math.max(1, size));
    const s = r.pick(inside);
    return s.start + r.int(Math.min(s.end, size) - s.start);
  }

  private flip(): void {
    const n = 1 + this.rng.int(this.rng.chance(0.7) ? 3 : 16);
    const at: string[] = [];
    for (let i = 0; i < n && this.bytes.length > 0; i++) {
      const p = this.position();
      this.bytes[p]! ^= 1 + this.rng.int(255);
      at.push(hex(p));
    }
    this.steps.push(`flip bytes at ${at.join(',')}`);
  }

  /** Overwrites a 2/4/8-byte field with a boundary value, or nudges its value. */
  private field(): void {
    const r = this.rng;
    const width = r.pick([2, 4, 4, 8, 8]);
    const p = this.position();
    const at = Math.max(0, Math.min(p - (p % width), this.bytes.length - width));
    if (this.bytes.length < width) return this.flip();
    const big = r.chance(0.8) ? this.plan.bigEndian : !this.plan.bigEndian;
    const dv = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.length);
    const old = readField(dv, at, width, big);
    const mask = (1n << BigInt(width * 8)) - 1n;
    let value: bigint;
    const roll = r.int(10);
    if (roll < 5) value = r.pick(BOUNDARIES);
    else if (roll < 7) value = old + BigInt(r.pick([-1, 1, -512, 512, -4096, 4096]));
    else if (roll < 8) value = old << BigInt(r.pick([1, 9, 12, 20, 32]));
    else if (roll < 9) value = BigInt(this.bytes.length + r.pick([-512, -1, 0, 1, 512]));
    else value = old ^ (1n << BigInt(r.int(width * 8)));
    value &= mask;
    writeField(dv, at, width, big, value);
    this.steps.push(`u${width * 8}${big ? 'be' : 'le'}@${hex(at)} ${hex(old)} -> ${hex(value)}`);
  }

  private truncate(): void {
    const r = this.rng;
    const size = this.bytes.length;
    const roll = r.int(10);
    let to: number;
    if (roll < 1) to = r.int(Math.min(size, 600));
    else if (roll < 5) to = this.position();
    else if (roll < 7) to = size - 1 - r.int(Math.min(size, 4096));
    else to = r.int(size);
    to = Math.max(0, Math.min(size, to));
    this.bytes = this.bytes.slice(0, to);
    this.steps.push(`truncate to ${to}`);
  }

  private blockSize(): number {
    return this.rng.pick([512, 512, 4096, 4096, 65536]);
  }

  /** Zeroes a table-sized block (a lost table, a wiped header). */
  private zeroBlock(): void {
    const bs = this.blockSize();
    const start = this.position();
    const from = start - (start % bs);
    const to = Math.min(this.bytes.length, from + bs);
    this.bytes.fill(0, from, to);
    this.steps.push(`zero ${bs} bytes at ${hex(from)}`);
  }

  /** Copies one table-sized block over another (shared and cross-linked tables). */
  private duplicateBlock(): void {
    const bs = this.blockSize();
    const a = this.position();
    const b = this.position();
    const from = a - (a % bs);
    const to = b - (b % bs);
    const n = Math.min(bs, this.bytes.length - from, this.bytes.length - to);
    if (n <= 0 || from === to) return this.flip();
    this.bytes.copyWithin(to, from, from + n);
    this.steps.push(`copy ${n} bytes from ${hex(from)} to ${hex(to)}`);
  }

  /** Repeats one table entry over the next ones (tables and blocks shared by many entries). */
  private fanOut(): void {
    const width = this.rng.pick([4, 8]);
    const p = this.position();
    const at = p - (p % width);
    const n = Math.min(2 + this.rng.int(256), Math.floor((this.bytes.length - at) / width));
    if (n < 2) return this.flip();
    for (let k = 1; k < n; k++) this.bytes.copyWithin(at + k * width, at, at + width);
    this.steps.push(`repeat the ${width}-byte entry at ${hex(at)} ${n} times`);
  }

  /** Fills a short run with random bytes. */
  private randomRun(): void {
    const p = this.position();
    const n = Math.min(this.bytes.length - p, 1 + this.rng.int(64));
    for (let i = 0; i < n; i++) this.bytes[p + i] = this.rng.int(256);
    this.steps.push(`random ${n} bytes at ${hex(p)}`);
  }

  /** Appends bytes (zeroes or garbage) past the end. */
  private extend(): void {
    const n = this.rng.pick([1, 511, 512, 4096, 65536, 1 << 20]);
    const garbage = this.rng.chance(0.5);
    const out = new Uint8Array(this.bytes.length + n);
    out.set(this.bytes);
    if (garbage) for (let i = this.bytes.length; i < out.length; i++) out[i] = this.rng.int(256);
    this.bytes = out;
    this.steps.push(`append ${n} ${garbage ? 'random' : 'zero'} bytes`);
  }

  /**
   * Text edits: a number or word swapped for a hostile one (mostly a keyword for another), a
   * line repeated, dropped, or one of the format's own lines inserted.
   */
  private textual(): void {
    const text = Buffer.from(this.bytes.buffer, this.bytes.byteOffset, this.bytes.length).toString(
      'latin1',
    );
    const r = this.rng;
    const roll = r.int(5);
    let out: string;
    let what: string;
    if (roll < 2) {
      const words = this.plan.words.filter((w) => !w.includes(' '));
      const keyword = new RegExp(`\\b(${words.join('|')})\\b`, 'g');
      const re = roll === 0 ? /\d+/g : r.chance(0.7) ? keyword : /[A-Za-z]{2,}/g;
      const found = [...text.matchAll(re)];
      if (found.length === 0) return this.flip();
      const m = r.pick(found);
      const by = roll === 0 ? r.pick(NUMBERS) : r.pick(words);
      out = text.slice(0, m.index) + by + text.slice(m.index! + m[0].length);
      what = `'${m[0]}' at ${hex(m.index!)} -> '${by}'`;
    } else {
      const lines = text.split('\n');
      const n = r.int(lines.length);
      if (roll === 4) {
        const line = r.pick(this.plan.words.filter((w) => w.includes(' ')));
        lines.splice(n, 0, line);
        what = `line '${line}' inserted at line ${n + 1}`;
      } else {
        const times = roll === 2 ? r.pick([2, 100, 5000]) : 0;
        lines.splice(n, 1, ...new Array<string>(times).fill(lines[n]!));
        what = `line ${n + 1} ${times ? `repeated ${times} times` : 'dropped'}`;
      }
      out = lines.join('\n');
    }
    this.bytes = new Uint8Array(Buffer.from(out, 'latin1'));
    this.steps.push(`text: ${what}`);
  }

  /** Points a stored file reference outside the image's directory (same length). */
  private reference(): void {
    const s = this.rng.pick(this.plan.refs);
    if (s.end > this.bytes.length) return this.flip();
    const unit = s.utf16 ? 2 : 1;
    const choices = this.plan.hostile((s.end - s.start) / unit);
    if (choices.length === 0) return this.flip();
    const ref = this.rng.pick(choices);
    this.bytes.set(Buffer.from(ref, s.utf16 ? 'utf16le' : 'latin1'), s.start);
    this.steps.push(`reference at ${hex(s.start)} -> '${ref}'`);
  }
}

function readField(dv: DataView, at: number, width: number, big: boolean): bigint {
  if (width === 2) return BigInt(dv.getUint16(at, !big));
  if (width === 4) return BigInt(dv.getUint32(at, !big));
  return dv.getBigUint64(at, !big);
}

function writeField(dv: DataView, at: number, width: number, big: boolean, v: bigint): void {
  if (width === 2) dv.setUint16(at, Number(v), !big);
  else if (width === 4) dv.setUint32(at, Number(v), !big);
  else dv.setBigUint64(at, v, !big);
}

/**
 * Same-length spellings of hostile references: out of the image's directory (`../o/s`, a
 * symlink `l` pointing out, a symlink `d` to a device, an absolute path) or back to the image
 * itself (`self`, a loop); padded with `./` and doubled slashes to `length` bytes.
 */
export function hostileReferences(length: number, self?: string): string[] {
  const out: string[] = [];
  for (const base of ['../o/s', 'l', 'd', '/etc/hostname', ...(self ? [self] : [])]) {
    const padded = pad(base, length);
    if (padded) out.push(padded);
  }
  return out;
}

function pad(ref: string, length: number): string | undefined {
  if (ref.length > length) return undefined;
  let out = ref;
  if (!ref.startsWith('/')) {
    while (out.length + 2 <= length) out = `./${out}`;
  }
  // One slash more where the difference is odd (a//b is a/b), or slashes up to the length.
  const slash = out.lastIndexOf('/');
  if (out.length < length) {
    if (slash < 0) return undefined;
    out = out.slice(0, slash) + '/'.repeat(length - out.length) + out.slice(slash);
  }
  return out;
}

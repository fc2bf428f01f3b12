/**
 * The images the format fuzzer mutates: one line per format variant. A target builds a small
 * real image with qemu-img at test time; `hot` locates its headers and tables (mutations aim
 * there), `fixup` recomputes checksums so mutations get past them. A format without `hot`
 * gets the first 64 KiB, so adding one is a line such as
 *   { name: 'qcow2', make: convert('qcow2') },
 */
import { readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { vhdChecksum } from '../../src/formats/vhd/footer.js';
import { checksumWithField } from '../../src/formats/vhdx/crc32c.js';
import {
  BAT_REGION,
  FILE_PARAMETERS,
  guidAt,
  METADATA_REGION,
  VIRTUAL_DISK_SIZE,
} from '../../src/formats/vhdx/guid.js';
import { writeLuks1 } from '../helpers/luks.js';
import { qemuImg, qemuIo } from '../helpers/peers.js';
import type { Reference, Span } from './mutate.js';

export interface Target {
  name: string;
  /** Builds the image and any files it references in `dir` from `src` (raw); returns its path. */
  make(dir: string, src: string): Promise<string>;
  /** Open with this format instead of probing (formats that are never probed). */
  format?: string;
  /** Headers and tables located from the format's own headers. */
  hot?: (b: Buffer) => Span[];
  /** Recomputes checksums after a mutation (most cases; some keep a broken checksum). */
  fixup?: (b: Buffer) => void;
  bigEndian?: boolean;
  /** A text format: words to swap in and lines to insert (words with a space are lines). */
  words?: string[];
  /** Share of the iteration count (formats that are only refused need few). */
  weight?: number;
}

const KiB = 1024;
const REFUSED = 0.15;
/** Extent access modes and types, create types and keys of VMDK descriptors. */
export const VMDK_WORDS = [
  'RW',
  'RDONLY',
  'NOACCESS',
  'FLAT',
  'SPARSE',
  'ZERO',
  'VMFS',
  'VMFSSPARSE',
  'SESPARSE',
  'VMFSRDM',
  'monolithicFlat',
  'twoGbMaxExtentSparse',
  'vmfsSparse',
  'streamOptimized',
  'parentCID',
  'parentFileNameHint',
  'CID',
  'version',
  'RW 2048 ZERO',
  'RW 8 FLAT "disk-flat.vmdk" 0',
  'RDONLY 16 FLAT "disk-flat.vmdk" 8191',
  'RW 128 SPARSE "disk-s001.vmdk"',
  'RW 8 SPARSE "disk-s001.vmdk" 4',
  'RW 8 VMFSSPARSE "disk-flat.vmdk"',
  'NOACCESS 8 FLAT "disk-flat.vmdk" 0',
  'RW 99999999999999999999 ZERO',
  'RW 4 ZERO "disk-flat.vmdk"',
  'RW 4 FLAT',
  'parentCID=12345678',
  'parentFileNameHint="disk.vmdk"',
  'createType="vmfsSparse"',
];

export const targets: Target[] = [
  { name: 'raw', make: convert('raw'), hot: () => [span(0, 4 * KiB)], weight: 0.25 },
  { name: 'vmdk-sparse', make: convert('vmdk'), hot: vmdkHot },
  { name: 'vmdk-stream', make: convert('vmdk', 'subformat=streamOptimized'), hot: vmdkHot },
  { name: 'vmdk-flat', make: convert('vmdk', 'subformat=monolithicFlat'), words: VMDK_WORDS },
  {
    name: 'vmdk-split',
    make: convert('vmdk', 'subformat=twoGbMaxExtentSparse'),
    words: VMDK_WORDS,
  },
  { name: 'vmdk-delta', make: overlay('vmdk'), hot: vmdkHot },
  { name: 'vdi', make: convert('vdi'), hot: vdiHot },
  { name: 'vdi-static', make: convert('vdi', 'static=on'), hot: vdiHot },
  { name: 'vpc', make: convert('vpc'), hot: vpcHot, fixup: vpcFixup, bigEndian: true },
  {
    name: 'vpc-diff',
    make: vhdDifferencing,
    hot: vpcHot,
    fixup: vpcFixup,
    bigEndian: true,
  },
  {
    name: 'vpc-fixed',
    make: convert('vpc', 'subformat=fixed'),
    format: 'vpc',
    hot: vpcHot,
    fixup: vpcFixup,
    bigEndian: true,
  },
  { name: 'vhdx', make: convert('vhdx', 'block_size=1M'), hot: vhdxHot, fixup: vhdxFixup },
  {
    name: 'vhdx-fixed',
    make: convert('vhdx', 'subformat=fixed,block_size=1M'),
    hot: vhdxHot,
    fixup: vhdxFixup,
  },
  { name: 'vhdx-log', make: dirtyVhdx, hot: vhdxHot, fixup: vhdxFixup },
  { name: 'qed', make: convert('qed'), hot: qedHot },
  { name: 'qed-backing', make: overlay('qed'), hot: qedHot },
  { name: 'parallels', make: convert('parallels'), hot: head, weight: REFUSED },
  { name: 'luks', make: luks, hot: head, weight: REFUSED },
  { name: 'bochs', make: magic('Bochs Virtual HD Image\0'), hot: head, weight: REFUSED },
  { name: 'cloop', make: magic('#!/bin/sh\n#V2.0 Format\n'), hot: head, weight: REFUSED },
];

function span(start: number, end: number): Span {
  return { start, end: Math.max(start, end) };
}

function convert(format: string, options?: string) {
  return async (dir: string, src: string) => {
    const path = join(dir, `disk.${format}`);
    const o = options ? ['-o', options] : [];
    await qemuImg('convert', '-f', 'raw', '-O', format, ...o, src, path);
    return path;
  };
}

/** An overlay over a base of the same format, with data of its own over the base's. */
function overlay(format: string) {
  return async (dir: string, src: string) => {
    const base = join(dir, `base.${format}`);
    await qemuImg('convert', '-f', 'raw', '-O', format, src, base);
    const path = join(dir, `disk.${format}`);
    await qemuImg('create', '-f', format, '-b', `base.${format}`, '-F', format, path);
    await qemuIo(path, ['write -P 0x66 64k 128k', 'write -z 1M 64k', 'write -P 0x67 3M 4k']);
    return path;
  };
}

/**
 * A differencing VHD (qemu-img cannot make one): a dynamic VHD turned into the child of
 * base.vhd, which it finds through a relative Windows path locator (W2ru), as Hyper-V writes.
 */
async function vhdDifferencing(dir: string, src: string): Promise<string> {
  const base = join(dir, 'base.vhd');
  await qemuImg('convert', '-f', 'raw', '-O', 'vpc', src, base);
  const childRaw = join(dirname(dir), 'child.raw');
  writeFileSync(childRaw, '');
  truncateSync(childRaw, statSync(src).size);
  await qemuIo(childRaw, ['write -P 0xcc 1M 64k', 'write -P 0xdd 3000k 8k'], 'raw');
  const path = join(dir, 'disk.vhd');
  await qemuImg('convert', '-f', 'raw', '-O', 'vpc', childRaw, path);
  const b = readFileSync(path);
  const parentId = readFileSync(base).subarray(68, 84);
  for (const footer of [0, b.length - 512]) b.writeUInt32BE(4, footer + 60); // differencing
  const dyn = Number(b.readBigUInt64BE(16));
  parentId.copy(b, dyn + 40);
  Buffer.from('base.vhd', 'utf16le')
    .swap16()
    .copy(b, dyn + 64);
  const locator = Buffer.from('.\\base.vhd', 'utf16le');
  const at = Number(b.readBigUInt64BE(dyn + 16)) + 256; // the BAT sector's unused tail
  b.write('W2ru', dyn + 576, 'latin1');
  b.writeUInt32BE(1, dyn + 580);
  b.writeUInt32BE(locator.length, dyn + 584);
  b.writeBigUInt64BE(BigInt(at), dyn + 592);
  locator.copy(b, at);
  vpcFixup(b);
  writeFileSync(path, b);
  return path;
}

/** A VHDX whose log holds an entry qemu wrote but never applied (a failed BAT write). */
async function dirtyVhdx(dir: string, src: string): Promise<string> {
  const path = await convert('vhdx', 'block_size=1M')(dir, src);
  const spec = {
    driver: 'vhdx',
    file: {
      driver: 'blkdebug',
      'inject-error': [{ event: 'none', iotype: 'write', sector: 4096, errno: 5 }],
      image: { driver: 'file', filename: path },
    },
  };
  await qemuIo(`json:${JSON.stringify(spec)}`, ['write -P 0x99 4M 64k']).catch(() => {});
  return path;
}

async function luks(dir: string): Promise<string> {
  return writeLuks1(join(dir, 'disk.luks'), 1024 * 1024);
}

/** Formats qemu-img cannot create: their magic and a few KiB of zeroes. */
function magic(text: string) {
  return async (dir: string) => {
    const path = join(dir, 'disk.img');
    const buf = Buffer.alloc(8 * KiB);
    buf.write(text, 'latin1');
    writeFileSync(path, buf);
    return path;
  };
}

function head(): Span[] {
  return [span(0, 512)];
}

/** Runs a locator; a header too damaged to follow just locates less. */
function locate(b: Buffer, fn: (out: Span[]) => void, base: Span[]): Span[] {
  const out = [...base];
  try {
    fn(out);
  } catch {}
  return out.filter((s) => s.start < b.length);
}

function u64(b: Buffer, at: number, big = false): number {
  const v = big ? b.readBigUInt64BE(at) : b.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError('no offset');
  return Number(v);
}

/** VMDK: header (or the stream-optimized footer), descriptor, grain directory, grain tables. */
function vmdkHot(b: Buffer): Span[] {
  return locate(
    b,
    (out) => {
      if (b.toString('latin1', 0, 4) !== 'KDMV') return;
      let h = 0;
      if (b.readBigUInt64LE(56) === 0xffffffffffffffffn) {
        h = b.length - 1024;
        out.push(span(b.length - 1536, b.length));
      }
      const sector = (at: number) => u64(b, h + at) * 512;
      out.push(span(sector(28), sector(28) + sector(36)));
      const gtes = b.readUInt32LE(h + 44);
      const grains = Math.ceil(u64(b, h + 12) / u64(b, h + 20));
      const entries = Math.ceil(grains / gtes);
      for (const gd of [sector(56), sector(48)]) {
        if (gd === 0) continue;
        out.push(span(gd, gd + entries * 4));
        for (let i = 0; i < Math.min(entries, 8); i++) {
          const gt = b.readUInt32LE(gd + i * 4) * 512;
          // The grain table entries in use, and a stream-optimized table's marker before it.
          if (gt > 0) out.push(span(gt - 16, gt + Math.min(gtes, grains - i * gtes) * 4));
        }
      }
    },
    [span(0, 512)],
  );
}

function vdiHot(b: Buffer): Span[] {
  return locate(
    b,
    (out) => {
      const bmap = b.readUInt32LE(0x154);
      out.push(span(bmap, bmap + b.readUInt32LE(0x180) * 4));
    },
    [span(0, 512)],
  );
}

/** VHD: both footer copies, the dynamic header, the BAT and the first sector bitmaps. */
function vpcHot(b: Buffer): Span[] {
  return locate(
    b,
    (out) => {
      const footer = b.toString('latin1', 0, 8) === 'conectix' ? 0 : b.length - 512;
      const dyn = u64(b, footer + 16, true);
      out.push(span(dyn, dyn + 1024));
      for (let i = 0; i < 8; i++) {
        const loc = dyn + 576 + i * 24;
        const at = u64(b, loc + 16, true);
        if (b.readUInt32BE(loc) !== 0) out.push(span(at, at + b.readUInt32BE(loc + 8)));
      }
      const bat = u64(b, dyn + 16, true);
      const entries = b.readUInt32BE(dyn + 28);
      out.push(span(bat, bat + entries * 4));
      for (let i = 0; i < Math.min(entries, 16); i++) {
        const e = b.readUInt32BE(bat + i * 4);
        if (e !== 0xffffffff) out.push(span(e * 512, e * 512 + 512));
      }
    },
    [span(0, 512), span(b.length - 512, b.length)],
  );
}

function vpcFixup(b: Buffer): void {
  for (const at of [0, b.length - 512]) {
    if (at < 0 || at + 512 > b.length || b.toString('latin1', at, at + 8) !== 'conectix') continue;
    b.writeUInt32BE(vhdChecksum(b.subarray(at, at + 512), 64), at + 64);
    const dyn = b.readBigUInt64BE(at + 16);
    if (dyn + 1024n > BigInt(b.length)) continue;
    const d = Number(dyn);
    if (b.toString('latin1', d, d + 8) === 'cxsparse') {
      b.writeUInt32BE(vhdChecksum(b.subarray(d, d + 1024), 36), d + 36);
    }
  }
}

const HEADERS = [64 * KiB, 128 * KiB];
const REGION_TABLES = [192 * KiB, 256 * KiB];

/** VHDX: identifier, headers, region tables, metadata table and items, BAT start, log. */
function vhdxHot(b: Buffer): Span[] {
  return locate(
    b,
    (out) => {
      const count = Math.min(b.readUInt32LE(REGION_TABLES[0]! + 8), 8);
      let bat = 0;
      let blockSize = 0;
      let diskSize = 0;
      for (let i = 0; i < count; i++) {
        const e = REGION_TABLES[0]! + 16 + i * 32;
        const guid = guidAt(b, e);
        const offset = u64(b, e + 16);
        if (guid === BAT_REGION) bat = offset;
        if (guid !== METADATA_REGION) continue;
        const items = Math.min(b.readUInt16LE(offset + 10), 16);
        out.push(span(offset, offset + 32 + items * 32));
        for (let j = 0; j < items; j++) {
          const at = offset + 32 + j * 32;
          const from = offset + b.readUInt32LE(at + 16);
          out.push(span(from, from + Math.min(b.readUInt32LE(at + 20), 4 * KiB)));
          if (guidAt(b, at) === FILE_PARAMETERS) blockSize = b.readUInt32LE(from);
          if (guidAt(b, at) === VIRTUAL_DISK_SIZE) diskSize = u64(b, from);
        }
      }
      // The BAT entries in use (payload blocks; a bitmap entry follows every chunk of them).
      const blocks = Math.ceil(diskSize / blockSize);
      out.push(span(bat, bat + 8 * (blocks + Math.floor(blocks / ((2 ** 23 * 512) / blockSize)))));
      for (const h of HEADERS) {
        const log = u64(b, h + 72);
        out.push(span(log, log + Math.min(b.readUInt32LE(h + 68), 64 * KiB)));
      }
    },
    [
      span(0, 8),
      ...HEADERS.map((h) => span(h, h + 80)),
      ...REGION_TABLES.map((r) => span(r, r + 16 + 3 * 32)),
    ],
  );
}

function vhdxFixup(b: Buffer): void {
  const crc = (at: number, length: number) => {
    if (at + length > b.length) return;
    b.writeUInt32LE(checksumWithField(b.subarray(at, at + length), 4), at + 4);
  };
  for (const h of HEADERS) if (b.toString('latin1', h, h + 4) === 'head') crc(h, 4 * KiB);
  for (const r of REGION_TABLES) if (b.toString('latin1', r, r + 4) === 'regi') crc(r, 64 * KiB);
  // Log entries that do not wrap around the end of the log.
  const h = HEADERS[0]!;
  if (h + 80 > b.length) return;
  const start = Number(b.readBigUInt64LE(h + 72));
  const end = Math.min(b.length, start + b.readUInt32LE(h + 68));
  for (let at = start; at + 64 <= end; at += 4 * KiB) {
    if (b.toString('latin1', at, at + 4) !== 'loge') continue;
    const length = b.readUInt32LE(at + 8);
    if (length > 0 && length % (4 * KiB) === 0 && at + length <= end) crc(at, length);
  }
  for (const other of HEADERS.slice(1)) {
    if (b.toString('latin1', other, other + 4) === 'head') crc(other, 4 * KiB);
  }
}

/** QED: header, backing file name, L1 table, the first L2 tables. */
function qedHot(b: Buffer): Span[] {
  return locate(
    b,
    (out) => {
      const name = b.readUInt32LE(56);
      out.push(span(name, name + b.readUInt32LE(60)));
      const l1 = u64(b, 40);
      const cluster = b.readUInt32LE(4);
      const perTable = (cluster * b.readUInt32LE(8)) / 8;
      const clusters = Math.ceil(u64(b, 48) / cluster);
      const tables = Math.ceil(clusters / perTable);
      out.push(span(l1, l1 + tables * 8));
      for (let i = 0; i < Math.min(tables, 4); i++) {
        const l2 = u64(b, l1 + i * 8);
        if (l2 > 0) out.push(span(l2, l2 + Math.min(perTable, clusters - i * perTable) * 8));
      }
    },
    [span(0, 64)],
  );
}

/** Where `b` holds the names of the image's sibling files (its references), ASCII or UTF-16. */
export function referencesIn(b: Buffer, names: string[]): Reference[] {
  const out: Reference[] = [];
  for (const name of names) {
    for (const utf16 of [false, true]) {
      const needle = Buffer.from(name, utf16 ? 'utf16le' : 'latin1');
      for (let at = b.indexOf(needle); at >= 0; at = b.indexOf(needle, at + 1)) {
        out.push({ start: at, end: at + needle.length, utf16 });
      }
    }
  }
  return out;
}

/**
 * Just enough FAT12/16/32 to put files on a volume made by mkfs.vfat without mounting it (this
 * machine's kernel has no vfat, and mtools is not a project peer): files go into the root
 * directory as 8.3 names with contiguous cluster chains in every FAT copy, FSInfo is kept
 * right so `fsck.vfat -n` stays clean; deleting marks the entry 0xE5 and frees the chain, as
 * DOS does, so the clusters keep their bytes. `readFatFiles` reads them back to compare.
 * Test-side code only, written from Microsoft's FAT specification.
 */
import { readFileSync, writeFileSync } from 'node:fs';

interface Fat {
  bytes: Buffer;
  kind: 12 | 16 | 32;
  fatOffset: number;
  fatBytes: number;
  fats: number;
  /** Root directory: a fixed region (FAT12/16) or the first cluster of its chain (FAT32). */
  rootOffset: number;
  rootBytes: number;
  dataOffset: number;
  clusterBytes: number;
  fsinfo: number | undefined;
  clusters: number;
}

function layout(bytes: Buffer): Fat {
  const bps = bytes.readUInt16LE(11);
  const spc = bytes[13]!;
  const reserved = bytes.readUInt16LE(14);
  const fats = bytes[16]!;
  const rootEntries = bytes.readUInt16LE(17);
  const fat16Size = bytes.readUInt16LE(22);
  const fatSize = fat16Size || bytes.readUInt32LE(36);
  const total = bytes.readUInt16LE(19) || bytes.readUInt32LE(32);
  const rootSector = reserved + fats * fatSize;
  const rootBytes = Math.ceil((rootEntries * 32) / bps) * bps;
  const dataOffset = rootSector * bps + rootBytes;
  const clusters = Math.floor((total * bps - dataOffset) / (spc * bps));
  const kind = fat16Size === 0 ? 32 : clusters < 4085 ? 12 : 16;
  const fat: Fat = {
    bytes,
    kind,
    fatOffset: reserved * bps,
    fatBytes: fatSize * bps,
    fats,
    rootOffset: rootSector * bps,
    rootBytes,
    dataOffset,
    clusterBytes: spc * bps,
    fsinfo: kind === 32 ? bytes.readUInt16LE(48) * bps : undefined,
    clusters,
  };
  if (kind === 32) {
    fat.rootOffset = clusterAt(fat, bytes.readUInt32LE(44));
    fat.rootBytes = fat.clusterBytes;
  }
  return fat;
}

const EOC = { 12: 0xfff, 16: 0xffff, 32: 0x0fffffff };
const END = { 12: 0xff8, 16: 0xfff8, 32: 0x0ffffff8 };

function entry(f: Fat, c: number): number {
  if (f.kind === 32) return f.bytes.readUInt32LE(f.fatOffset + c * 4) & 0x0fffffff;
  if (f.kind === 16) return f.bytes.readUInt16LE(f.fatOffset + c * 2);
  const v = f.bytes.readUInt16LE(f.fatOffset + Math.floor((c * 3) / 2));
  return c & 1 ? v >> 4 : v & 0xfff;
}

function setEntry(f: Fat, c: number, v: number): void {
  for (let k = 0; k < f.fats; k++) {
    const base = f.fatOffset + k * f.fatBytes;
    if (f.kind === 32) f.bytes.writeUInt32LE(v, base + c * 4);
    else if (f.kind === 16) f.bytes.writeUInt16LE(v, base + c * 2);
    else {
      const at = base + Math.floor((c * 3) / 2);
      const old = f.bytes.readUInt16LE(at);
      f.bytes.writeUInt16LE(c & 1 ? (old & 0x000f) | (v << 4) : (old & 0xf000) | v, at);
    }
  }
}

function clusterAt(f: Fat, c: number): number {
  return f.dataOffset + (c - 2) * f.clusterBytes;
}

function adjustFree(f: Fat, delta: number): void {
  if (f.fsinfo === undefined) return;
  const at = f.fsinfo + 488;
  const free = f.bytes.readUInt32LE(at);
  if (free !== 0xffffffff) f.bytes.writeUInt32LE(free + delta, at);
}

function shortName(name: string): Buffer {
  const [base = '', ext = ''] = name.toUpperCase().split('.');
  return Buffer.from(base.padEnd(8, ' ').slice(0, 8) + ext.padEnd(3, ' ').slice(0, 3), 'latin1');
}

/** Root directory entries (32 bytes each; FAT32: of the first root cluster). */
function* rootEntries(f: Fat): Iterable<number> {
  for (let at = f.rootOffset; at < f.rootOffset + f.rootBytes; at += 32) yield at;
}

export function writeFatFiles(path: string, files: Record<string, Buffer>): void {
  const f = layout(readFileSync(path));
  let next = 3;
  for (const [name, data] of Object.entries(files)) {
    const count = Math.max(1, Math.ceil(data.length / f.clusterBytes));
    while (next < f.clusters + 2 && entry(f, next) !== 0) next++;
    const first = next;
    for (let i = 0; i < count; i++) {
      if (entry(f, first + i) !== 0) throw new Error('test FAT writer: no contiguous free run');
      setEntry(f, first + i, i === count - 1 ? EOC[f.kind] : first + i + 1);
    }
    data.copy(f.bytes, clusterAt(f, first));
    next = first + count;
    adjustFree(f, -count);
    const slot = [...rootEntries(f)].find((at) => f.bytes[at] === 0 || f.bytes[at] === 0xe5);
    if (slot === undefined) throw new Error('test FAT writer: root directory full');
    f.bytes.fill(0, slot, slot + 32);
    shortName(name).copy(f.bytes, slot);
    f.bytes[slot + 11] = 0x20;
    if (f.kind === 32) f.bytes.writeUInt16LE(first >>> 16, slot + 20);
    f.bytes.writeUInt16LE(first & 0xffff, slot + 26);
    f.bytes.writeUInt32LE(data.length, slot + 28);
  }
  if (f.fsinfo !== undefined) f.bytes.writeUInt32LE(next, f.fsinfo + 492);
  writeFileSync(path, f.bytes);
}

export function deleteFatFile(path: string, name: string): void {
  const f = layout(readFileSync(path));
  const want = shortName(name);
  const slot = [...rootEntries(f)].find((at) => f.bytes.subarray(at, at + 11).equals(want));
  if (slot === undefined) throw new Error(`test FAT writer: no ${name}`);
  let c = (f.bytes.readUInt16LE(slot + 20) << 16) | f.bytes.readUInt16LE(slot + 26);
  let freed = 0;
  while (c >= 2 && c < END[f.kind]) {
    const n = entry(f, c);
    setEntry(f, c, 0);
    freed++;
    c = n;
  }
  f.bytes[slot] = 0xe5;
  adjustFree(f, freed);
  writeFileSync(path, f.bytes);
}

/** Every file in the root directory with its contents, read by following its chain. */
export function readFatFiles(path: string): Map<string, Buffer> {
  const f = layout(readFileSync(path));
  const out = new Map<string, Buffer>();
  for (const at of rootEntries(f)) {
    const first = f.bytes[at]!;
    if (first === 0) break;
    const attr = f.bytes[at + 11]!;
    if (first === 0xe5 || attr === 0x0f || attr & 0x18) continue;
    const raw = f.bytes.subarray(at, at + 11).toString('latin1');
    const name = `${raw.slice(0, 8).trimEnd()}.${raw.slice(8).trimEnd()}`;
    const size = f.bytes.readUInt32LE(at + 28);
    const parts: Buffer[] = [];
    let c = (f.bytes.readUInt16LE(at + 20) << 16) | f.bytes.readUInt16LE(at + 26);
    for (let left = size; left > 0 && c >= 2 && c < END[f.kind]; c = entry(f, c)) {
      const n = Math.min(left, f.clusterBytes);
      parts.push(Buffer.from(f.bytes.subarray(clusterAt(f, c), clusterAt(f, c) + n)));
      left -= n;
    }
    out.set(name, Buffer.concat(parts));
  }
  return out;
}

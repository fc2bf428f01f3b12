/**
 * Just enough FAT32 to put files on a volume made by mkfs.vfat without mounting it (this
 * machine's kernel has no vfat, and mtools is not a project peer): files go into the root
 * directory as 8.3 names with contiguous cluster chains in every FAT copy, FSInfo is kept
 * right so `fsck.vfat -n` stays clean; deleting marks the entry 0xE5 and frees the chain, as
 * DOS does, so the clusters keep their bytes. `readFatFiles` reads them back to compare.
 * Test-side code only, written from Microsoft's FAT specification.
 */
import { readFileSync, writeFileSync } from 'node:fs';

interface Fat32 {
  bytes: Buffer;
  fatOffset: number;
  fatBytes: number;
  fats: number;
  dataOffset: number;
  clusterBytes: number;
  rootCluster: number;
  fsinfo: number;
  clusters: number;
}

function layout(bytes: Buffer): Fat32 {
  const bps = bytes.readUInt16LE(11);
  const spc = bytes[13]!;
  const reserved = bytes.readUInt16LE(14);
  const fats = bytes[16]!;
  const fatSize = bytes.readUInt32LE(36);
  const total = bytes.readUInt32LE(32);
  const dataSector = reserved + fats * fatSize;
  return {
    bytes,
    fatOffset: reserved * bps,
    fatBytes: fatSize * bps,
    fats,
    dataOffset: dataSector * bps,
    clusterBytes: spc * bps,
    rootCluster: bytes.readUInt32LE(44),
    fsinfo: bytes.readUInt16LE(48) * bps,
    clusters: Math.floor((total - dataSector) / spc),
  };
}

const entry = (f: Fat32, c: number) => f.bytes.readUInt32LE(f.fatOffset + c * 4) & 0x0fffffff;
function setEntry(f: Fat32, c: number, v: number): void {
  for (let k = 0; k < f.fats; k++) f.bytes.writeUInt32LE(v, f.fatOffset + k * f.fatBytes + c * 4);
}
const clusterAt = (f: Fat32, c: number) => f.dataOffset + (c - 2) * f.clusterBytes;

function adjustFree(f: Fat32, delta: number): void {
  const at = f.fsinfo + 488;
  const free = f.bytes.readUInt32LE(at);
  if (free !== 0xffffffff) f.bytes.writeUInt32LE(free + delta, at);
}

function shortName(name: string): Buffer {
  const [base = '', ext = ''] = name.toUpperCase().split('.');
  return Buffer.from(base.padEnd(8, ' ').slice(0, 8) + ext.padEnd(3, ' ').slice(0, 3), 'latin1');
}

/** Root directory entries (32 bytes each) of the first root cluster. */
function* rootEntries(f: Fat32): Iterable<number> {
  const start = clusterAt(f, f.rootCluster);
  for (let at = start; at < start + f.clusterBytes; at += 32) yield at;
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
      setEntry(f, first + i, i === count - 1 ? 0x0fffffff : first + i + 1);
    }
    data.copy(f.bytes, clusterAt(f, first));
    next = first + count;
    adjustFree(f, -count);
    const slot = [...rootEntries(f)].find((at) => f.bytes[at] === 0 || f.bytes[at] === 0xe5);
    if (slot === undefined) throw new Error('test FAT writer: root directory full');
    f.bytes.fill(0, slot, slot + 32);
    shortName(name).copy(f.bytes, slot);
    f.bytes[slot + 11] = 0x20;
    f.bytes.writeUInt16LE(first >>> 16, slot + 20);
    f.bytes.writeUInt16LE(first & 0xffff, slot + 26);
    f.bytes.writeUInt32LE(data.length, slot + 28);
  }
  f.bytes.writeUInt32LE(next, f.fsinfo + 492);
  writeFileSync(path, f.bytes);
}

export function deleteFatFile(path: string, name: string): void {
  const f = layout(readFileSync(path));
  const want = shortName(name);
  const slot = [...rootEntries(f)].find((at) => f.bytes.subarray(at, at + 11).equals(want));
  if (slot === undefined) throw new Error(`test FAT writer: no ${name}`);
  let c = (f.bytes.readUInt16LE(slot + 20) << 16) | f.bytes.readUInt16LE(slot + 26);
  let freed = 0;
  while (c >= 2 && c < 0x0ffffff8) {
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
    for (let left = size; left > 0 && c >= 2 && c < 0x0ffffff8; c = entry(f, c)) {
      const n = Math.min(left, f.clusterBytes);
      parts.push(Buffer.from(f.bytes.subarray(clusterAt(f, c), clusterAt(f, c) + n)));
      left -= n;
    }
    out.set(name, Buffer.concat(parts));
  }
  return out;
}

/**
 * Partition tables: GPT (behind its protective MBR), MBR primary partitions, or none (a
 * filesystem on the whole disk). A table that cannot be trusted (bad checksums, overlapping
 * partitions) makes the whole disk pass through. Facts from the UEFI specification (GPT) and
 * the classic MBR layout.
 */

import { crc32 } from 'node:zlib';
import type { Image } from '../../image/types.js';
import { view } from '../../io/bytes.js';
import { looksLikeFat } from './fat.js';
import { ascii, u64 } from './part-reader.js';
import type { Partition, PartitionLayout, Range } from './types.js';

const MAX_GPT_ENTRIES = 4096;
const MAX_GPT_ARRAY = 4 * 1024 * 1024;

/** GPT type GUIDs whose contents are never looked at. */
const GPT_PASS: Record<string, string> = {
  'e6d6d379-f507-44c2-a23c-238f2a3df928': 'LVM physical volume',
  'a19d880f-05fc-4d3b-a006-743f0f84911e': 'Linux RAID member',
  'ca7d7ccb-63ed-4c53-861c-1742536059cc': 'LUKS encrypted volume',
  '7ffec5c9-2d00-49b7-8941-3ea10a5586b7': 'dm-crypt volume',
};

/** MBR partition types whose contents are never looked at. */
const MBR_PASS: Record<number, string> = {
  5: 'extended partition (logical partitions are not read)',
  15: 'extended partition (logical partitions are not read)',
  133: 'extended partition (logical partitions are not read)',
  142: 'LVM physical volume',
  253: 'Linux RAID member',
  232: 'LUKS encrypted volume',
};

async function readAt(
  image: Image,
  offset: number,
  length: number,
): Promise<Uint8Array | undefined> {
  if (offset < 0 || offset + length > image.size) return undefined;
  const buf = new Uint8Array(length);
  await image.read(buf, offset);
  return buf;
}

export async function readPartitions(image: Image): Promise<PartitionLayout> {
  const whole: PartitionLayout = {
    scheme: 'none',
    partitions: [{ number: 0, start: 0, length: image.size, type: 'none' }],
    reserved: [],
  };
  const mbr = await readAt(image, 0, 512);
  if (!mbr) return whole;
  const dv = view(mbr);
  const signed = dv.getUint16(510, true) === 0xaa55;
  const entries = signed ? mbrEntries(mbr) : undefined;
  const protective = entries?.some((e) => e.type === 0xee) ?? false;
  for (const sector of [512, 4096]) {
    const header = await readAt(image, sector, 512);
    if (header && ascii(header, 0, 8) === 'EFI PART') return readGpt(image, sector, header);
  }
  if (protective) return passAll('mbr', 'protective MBR without a readable GPT header');
  const used = entries?.filter((e) => e.type !== 0) ?? [];
  if (looksLikeFat(mbr)) {
    // A FAT boot sector on the whole disk; unless it also holds a plausible partition table.
    const plausible = used.some((e) => e.lba > 0 && (e.lba + e.sectors) * 512 <= image.size);
    return plausible
      ? passAll('none', 'sector 0 reads as both a FAT boot sector and an MBR')
      : whole;
  }
  if (used.length === 0) return whole;
  const partitions: Partition[] = [];
  for (const e of used) {
    const start = e.lba * 512;
    const length = e.sectors * 512;
    const p: Partition = {
      number: e.number,
      start,
      length,
      type: `mbr:0x${e.type.toString(16).padStart(2, '0')}`,
    };
    if (e.lba === 0 || e.sectors === 0 || start + length > image.size) {
      p.passReason = 'the partition does not lie inside the disk';
    } else if (MBR_PASS[e.type]) {
      p.passReason = MBR_PASS[e.type]!;
    }
    partitions.push(p);
  }
  return checked({ scheme: 'mbr', partitions, reserved: [{ start: 0, end: 512 }] });
}

interface MbrEntry {
  number: number;
  type: number;
  lba: number;
  sectors: number;
}

/** The four primary entries, or undefined when the sector is not an MBR (bad status bytes). */
function mbrEntries(mbr: Uint8Array): MbrEntry[] | undefined {
  const dv = view(mbr);
  const out: MbrEntry[] = [];
  for (let i = 0; i < 4; i++) {
    const at = 446 + i * 16;
    const status = mbr[at]!;
    if (status !== 0 && status !== 0x80) return undefined;
    out.push({
      number: i + 1,
      type: mbr[at + 4]!,
      lba: dv.getUint32(at + 8, true),
      sectors: dv.getUint32(at + 12, true),
    });
  }
  return out;
}

function passAll(scheme: PartitionLayout['scheme'], reason: string): PartitionLayout {
  return { scheme, partitions: [], reserved: [], passReason: reason };
}

async function readGpt(image: Image, sector: number, header: Uint8Array): Promise<PartitionLayout> {
  const dv = view(header);
  const headerSize = dv.getUint32(12, true);
  if (headerSize < 92 || headerSize > 512) return passAll('gpt', `GPT header size ${headerSize}`);
  const copy = header.slice(0, headerSize);
  view(copy).setUint32(16, 0, true);
  if (crc32(copy) !== dv.getUint32(16, true)) return passAll('gpt', 'GPT header checksum mismatch');
  const entriesLba = u64(dv, 72);
  const count = dv.getUint32(80, true);
  const entrySize = dv.getUint32(84, true);
  const firstUsable = u64(dv, 40);
  const lastUsable = u64(dv, 48);
  if (
    count > MAX_GPT_ENTRIES ||
    entrySize < 128 ||
    entrySize % 8 !== 0 ||
    count * entrySize > MAX_GPT_ARRAY ||
    entriesLba < 2
  ) {
    return passAll('gpt', 'GPT partition array has an impossible size or place');
  }
  const array = await readAt(image, entriesLba * sector, count * entrySize);
  if (!array) return passAll('gpt', 'GPT partition array lies past the end of the disk');
  if (crc32(array) !== dv.getUint32(88, true))
    return passAll('gpt', 'GPT partition array checksum mismatch');
  const usableStart = firstUsable * sector;
  const usableEnd = Math.min(image.size, (lastUsable + 1) * sector);
  if (!(usableStart < usableEnd))
    return passAll('gpt', 'GPT usable area is empty or past the disk');
  const av = view(array);
  const partitions: Partition[] = [];
  for (let i = 0; i < count; i++) {
    const at = i * entrySize;
    const type = guid(array, at);
    if (type === '00000000-0000-0000-0000-000000000000') continue;
    const first = u64(av, at + 32);
    const last = u64(av, at + 40);
    const start = first * sector;
    const end = (last + 1) * sector;
    const p: Partition = {
      number: i + 1,
      start,
      length: Math.max(0, end - start),
      type: `gpt:${type}`,
    };
    if (!(first <= last) || start < usableStart || end > usableEnd) {
      p.start = Number.isFinite(start) ? start : 0;
      p.length = 0;
      p.passReason = 'the partition does not lie inside the usable area';
    } else if (GPT_PASS[type]) {
      p.passReason = GPT_PASS[type]!;
    }
    partitions.push(p);
  }
  // Everything outside the usable area (MBR, headers, both partition arrays) is kept as is.
  const reserved: Range[] = [
    { start: 0, end: usableStart },
    { start: usableEnd, end: image.size },
  ];
  return checked({ scheme: 'gpt', partitions, reserved });
}

/** Partitions that overlap cannot both be trusted about which blocks are free. */
function checked(layout: PartitionLayout): PartitionLayout {
  const real = layout.partitions.filter((p) => p.length > 0).sort((a, b) => a.start - b.start);
  for (let i = 1; i < real.length; i++) {
    const a = real[i - 1]!;
    const b = real[i]!;
    if (b.start < a.start + a.length) {
      return passAll(layout.scheme, `partitions ${a.number} and ${b.number} overlap`);
    }
  }
  return layout;
}

/** A GUID in its mixed-endian text form. */
function guid(b: Uint8Array, at: number): string {
  const hex = (i: number) => b[at + i]!.toString(16).padStart(2, '0');
  const part = (idx: number[]) => idx.map(hex).join('');
  return [
    part([3, 2, 1, 0]),
    part([5, 4]),
    part([7, 6]),
    part([8, 9]),
    part([10, 11, 12, 13, 14, 15]),
  ].join('-');
}

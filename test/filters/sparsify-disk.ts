/**
 * Builds partitioned test disks for sparsify with the real tools: a GPT (sgdisk) holding a
 * FAT32 ESP (mkfs.vfat, files put in by the test-side writer in fat-files.ts), an ext4 root
 * (mkfs.ext4 -d from a generated directory) and a swap partition (mkswap). Every partition is
 * first filled with random bytes, as on a disk that has been in use, and some files are then
 * deleted, so their blocks keep their bytes. Partitions are built as separate files and copied
 * into the disk with dd at their offsets.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../helpers/peers.js';
import { deleteFatFile, writeFatFiles } from './fat-files.js';

const MiB = 1024 * 1024;
const SECTOR = 512;

export interface PartSpec {
  name: 'esp' | 'root' | 'swap';
  mib: number;
}

export interface DiskSpec {
  espMiB: number;
  rootMiB: number;
  swapMiB: number;
  /** Files made in the root filesystem (random contents), by name and size in bytes. */
  rootFiles: Record<string, number>;
  /** Root files deleted with debugfs after mkfs. */
  rootDeleted: string[];
  espFiles: Record<string, number>;
  espDeleted: string[];
  /** Runs on the partition files before they are copied into the disk. */
  tweak?: (parts: BuiltParts) => Promise<void>;
}

export interface BuiltParts {
  esp: string;
  root: string;
  swap: string;
}

export interface Placed {
  start: number;
  size: number;
}

export interface BuiltDisk {
  dir: string;
  path: string;
  parts: BuiltParts;
  esp: Placed;
  root: Placed;
  swap: Placed;
  /** Bytes of the deleted files (root and ESP). */
  deletedBytes: number;
  /** The ESP files that were kept, by 8.3 name. */
  espFiles: Map<string, Buffer>;
}

/** A file of `size` random bytes, written in 1 MiB pieces. */
export function randomFile(path: string, size: number): string {
  const fd = openSync(path, 'w');
  try {
    for (let done = 0; done < size; ) {
      const n = Math.min(MiB, size - done);
      writeSync(fd, randomBytes(n));
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

export async function buildDisk(spec: DiskSpec, parent?: string): Promise<BuiltDisk> {
  const dir = mkdtempSync(join(parent ?? '/tmp', 'sparsify-disk-'));
  const parts: BuiltParts = {
    esp: join(dir, 'esp.img'),
    root: join(dir, 'root.img'),
    swap: join(dir, 'swap.img'),
  };
  let deletedBytes = 0;

  // ext4 root from a directory, then some files deleted (their blocks keep their bytes).
  const tree = join(dir, 'tree');
  mkdirSync(join(tree, 'etc'), { recursive: true });
  for (let i = 0; i < 20; i++)
    writeFileSync(join(tree, 'etc', `small-${i}.conf`), `setting=${i}\n`.repeat(i + 1));
  for (const [name, size] of Object.entries(spec.rootFiles)) randomFile(join(tree, name), size);
  randomFile(parts.root, spec.rootMiB * MiB);
  await run('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', '-d', tree, parts.root]);
  for (const name of spec.rootDeleted) {
    await run('debugfs', ['-w', '-R', `rm /${name}`, parts.root]);
    deletedBytes += spec.rootFiles[name] ?? 0;
  }

  // FAT32 ESP from mkfs.vfat; files written and deleted by the small test-side FAT writer.
  randomFile(parts.esp, spec.espMiB * MiB);
  await run('mkfs.vfat', ['-F', '32', '-s', '1', parts.esp]);
  const espFiles: Record<string, Buffer> = {};
  const kept = new Map<string, Buffer>();
  for (const [name, size] of Object.entries(spec.espFiles)) espFiles[name] = randomBytes(size);
  writeFatFiles(parts.esp, espFiles);
  for (const [name, data] of Object.entries(espFiles)) {
    if (!spec.espDeleted.includes(name)) kept.set(name.toUpperCase(), data);
  }
  for (const name of spec.espDeleted) {
    deleteFatFile(parts.esp, name);
    deletedBytes += spec.espFiles[name] ?? 0;
  }

  randomFile(parts.swap, spec.swapMiB * MiB);
  await run('mkswap', ['-q', parts.swap]);

  if (spec.tweak) await spec.tweak(parts);

  // GPT at 1 MiB alignment; partition bytes copied in with dd.
  const esp: Placed = { start: MiB, size: spec.espMiB * MiB };
  const root: Placed = { start: esp.start + esp.size, size: spec.rootMiB * MiB };
  const swap: Placed = { start: root.start + root.size, size: spec.swapMiB * MiB };
  const path = join(dir, 'disk.img');
  await run('truncate', ['-s', String(swap.start + swap.size + MiB), path]);
  const sectors = (p: Placed) => `${p.start / SECTOR}:${(p.start + p.size) / SECTOR - 1}`;
  await run('sgdisk', [
    '-n',
    `1:${sectors(esp)}`,
    '-t',
    '1:ef00',
    '-c',
    '1:ESP',
    '-n',
    `2:${sectors(root)}`,
    '-t',
    '2:8300',
    '-c',
    '2:root',
    '-n',
    `3:${sectors(swap)}`,
    '-t',
    '3:8200',
    '-c',
    '3:swap',
    path,
  ]);
  for (const [file, p] of [
    [parts.esp, esp],
    [parts.root, root],
    [parts.swap, swap],
  ] as const) {
    await run('dd', [
      `if=${file}`,
      `of=${path}`,
      'bs=1M',
      `seek=${p.start / MiB}`,
      'conv=notrunc,sparse',
      'status=none',
    ]);
  }
  return { dir, path, parts, esp, root, swap, deletedBytes, espFiles: kept };
}

/** Copies bytes [p.start, p.start+p.size) of `disk` into `out` (dd). */
export async function extract(disk: string, p: Placed, out: string): Promise<string> {
  await run('dd', [
    `if=${disk}`,
    `of=${out}`,
    'bs=1M',
    `skip=${p.start / MiB}`,
    `count=${p.size / MiB}`,
    'status=none',
  ]);
  return out;
}

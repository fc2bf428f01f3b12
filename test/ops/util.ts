/** Helpers shared by the copy/convert/compare/clone tests. */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { ImageWrapper } from '../../src/image/base.js';
import type { Image, ZeroOptions } from '../../src/image/types.js';

/** Counts the bytes that really go through read/write/zero (for "reads less than" tests). */
export class CountingImage extends ImageWrapper {
  bytesRead = 0;
  bytesWritten = 0;
  bytesZeroed = 0;
  reads = 0;

  override async read(buf: Uint8Array, offset: number): Promise<void> {
    this.reads++;
    this.bytesRead += buf.length;
    return super.read(buf, offset);
  }

  override async write(buf: Uint8Array, offset: number): Promise<void> {
    this.bytesWritten += buf.length;
    return super.write(buf, offset);
  }

  override async zero(offset: number, length: number, opts?: ZeroOptions): Promise<void> {
    this.bytesZeroed += length;
    return super.zero(offset, length, opts);
  }
}

/** Fails reads that touch [from, to) with the given error (a stand-in for a bad sector). */
export class FailingImage extends ImageWrapper {
  constructor(
    next: Image,
    private readonly from: number,
    private readonly to: number,
    private readonly error: () => Error,
  ) {
    super(next);
  }

  override async read(buf: Uint8Array, offset: number): Promise<void> {
    if (offset < this.to && offset + buf.length > this.from) throw this.error();
    return super.read(buf, offset);
  }
}

/** Deterministic non-zero bytes (every byte depends on its image offset). */
export function pattern(length: number, offset: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) {
    const x = offset + i;
    b[i] = ((x * 31 + (x >>> 9) * 7 + seed * 13) & 0xff) | 1;
  }
  return b;
}

/** Writes pattern data at each [offset, length] into an existing file. */
export function writeRuns(path: string, runs: [number, number][], seed = 1): void {
  const fd = openSync(path, 'r+');
  try {
    for (const [offset, length] of runs)
      writeSync(fd, pattern(length, offset, seed), 0, length, offset);
  } finally {
    closeSync(fd);
  }
}

/** Writes `buf` at `offset` into an existing file. */
export function writeBytes(path: string, buf: Buffer, offset: number): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, buf, 0, buf.length, offset);
  } finally {
    closeSync(fd);
  }
}

/** A new file of `mib` MiB of non-zero data (every window is hashed, none skipped as zero). */
export function dataFile(path: string, mib: number): string {
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < mib; i++) {
    chunk.fill((i % 251) + 1);
    writeSync(fd, chunk);
  }
  closeSync(fd);
  return path;
}

/**
 * A process that truncates `path` to `size` bytes once a line reaches its stdin, then writes
 * "truncated" to its stdout. Started first, so its truncate(2) is ready to run at once.
 */
export function truncaterOf(path: string, size: number): ChildProcess {
  return spawn(
    process.execPath,
    [
      '-e',
      `process.stdin.once('data', () => { require('fs').truncateSync(${JSON.stringify(path)}, ${size}); process.stdout.write('truncated\\n'); process.exit(0); })`,
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
}

/**
 * Staging: a sequential stream written once to a temporary sparse file so a format that needs
 * random access (qcow2 inside .xz, a tar inside .gz) can be opened. All-zero blocks are not
 * written, so the file stays sparse. The file is unlinked as soon as it is reopened for
 * reading: it disappears when closed, and even if the process is killed then. A process
 * killed while it stages (kill -9) leaves its directory, named with its pid: the next staging
 * removes it once that pid is gone.
 */
import { mkdtempSync } from 'node:fs';
import { lstat, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CorruptImageError,
  type DiskpipeError,
  ioError,
  UnsupportedFeatureError,
} from '../errors.js';
import { throwIfAborted } from '../io/abort.js';
import { registerTemporary, unregisterTemporary } from '../io/cleanup.js';
import { LocalFile } from '../io/file.js';
import { pidIsAlive } from '../io/json-file.js';
import { isZeroChunk } from './sequential.js';
import type { StageLimit, StageLimitOptions } from './stage-limit.js';

export interface StageOptions extends StageLimitOptions {
  /** Directory for staged files (default: the system temp dir; the CLI: DISKPIPE_TMPDIR). */
  tempDir?: string;
  /** Stops staging (and the decoders feeding it) with an AbortError; the file is removed. */
  signal?: AbortSignal;
}

const BLOCK = 64 * 1024;
const BATCH = 16 * BLOCK;
const ZERO = Buffer.alloc(BLOCK);

/**
 * Writes `chunks` to a temporary sparse file and returns it opened read-only (already
 * unlinked). Past `limit` bytes staging stops with an error and the stream is closed (its
 * decoders stop too).
 */
export async function stageToFile(
  chunks: AsyncIterable<Uint8Array>,
  name: string,
  opts: StageOptions = {},
  limit?: StageLimit,
): Promise<LocalFile> {
  const base = opts.tempDir ?? tmpdir();
  let dir: string;
  try {
    // Synchronous, so the directory is registered for removal before any signal handler runs.
    dir = mkdtempSync(join(base, `${PREFIX}${process.pid}-`));
    registerTemporary(dir);
  } catch (err) {
    throw ioError(err, `cannot create a staging directory in ${base}`);
  }
  await removeOrphans(base);
  const path = join(dir, safeName(name));
  try {
    const out = await LocalFile.open(path, 'w+');
    try {
      await writeSparse(out, chunks, name, limit, opts.signal);
    } finally {
      await out.close();
    }
    return await LocalFile.open(path, 'r');
  } finally {
    await rm(dir, { recursive: true, force: true });
    unregisterTemporary(dir);
  }
}

const PREFIX = 'diskpipe-stage-';

/** Removes staging directories whose owner (the pid in the name) is gone; ours only. */
async function removeOrphans(base: string): Promise<void> {
  const names = await readdir(base).catch(() => [] as string[]);
  for (const name of names) {
    const m = /^(\d+)-[A-Za-z0-9]{6}$/.exec(name.slice(PREFIX.length));
    if (!name.startsWith(PREFIX) || !m || pidIsAlive(Number(m[1]))) continue;
    const path = join(base, name);
    const st = await lstat(path).catch(() => undefined);
    if (st?.isDirectory() && st.uid === process.getuid?.()) {
      await rm(path, { recursive: true, force: true }).catch(() => {});
    }
  }
}

/** Copies the stream into `out`, skipping all-zero 64 KiB blocks; returns the byte count. */
async function writeSparse(
  out: LocalFile,
  chunks: AsyncIterable<Uint8Array>,
  name: string,
  limit: StageLimit | undefined,
  signal: AbortSignal | undefined,
): Promise<number> {
  const batch = Buffer.allocUnsafe(BATCH);
  let filled = 0;
  let pos = 0;
  const flush = async () => {
    let runStart = -1;
    for (let at = 0; at <= filled; at += BLOCK) {
      const end = Math.min(at + BLOCK, filled);
      const data = at < filled && !batch.subarray(at, end).equals(ZERO.subarray(0, end - at));
      if (data && runStart < 0) runStart = at;
      if (!data && runStart >= 0) {
        await out.write(batch.subarray(runStart, at), pos + runStart);
        runStart = -1;
      }
    }
    if (runStart >= 0) await out.write(batch.subarray(runStart, filled), pos + runStart);
    pos += filled;
    filled = 0;
  };
  for await (const chunk of chunks) {
    throwIfAborted(signal, `staging ${name}`);
    // Zero bytes count too: a stream of zeroes can run for hours without writing anything.
    if (limit && pos + filled + chunk.length > limit.bytes) throw overLimit(name, limit);
    if (isZeroChunk(chunk)) {
      // Zeroes the decoder already knows about: a hole, never copied or compared.
      await flush();
      pos += chunk.length;
      continue;
    }
    for (let at = 0; at < chunk.length; ) {
      const n = Math.min(chunk.length - at, BATCH - filled);
      batch.set(chunk.subarray(at, at + n), filled);
      filled += n;
      at += n;
      if (filled === BATCH) await flush();
    }
  }
  await flush();
  await out.truncate(pos);
  return pos;
}

function overLimit(name: string, limit: StageLimit): DiskpipeError {
  const what = `${name}: staging stopped at ${limit.bytes} bytes`;
  if (limit.user)
    return new UnsupportedFeatureError(`${what}, ${limit.reason}; raise it to stage more`);
  return new CorruptImageError(
    `${what}: ${limit.reason}, but the decompressed stream goes on (a decompression bomb or a corrupt image)`,
  );
}

/** A file name for the staged copy: the last part of `name`, without odd characters. */
function safeName(name: string): string {
  const last = name.split(/[/\\:]/).pop() ?? '';
  const clean = last.replace(/[^\w.+-]/g, '_').replace(/^\.+/, '');
  return (clean || 'image').slice(0, 100);
}

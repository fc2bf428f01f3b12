/**
 * Cluster compression for the writer. Both run off the main thread (zlib in the libuv pool,
 * zstd in its native binding), so several clusters compress at once. The zstd binding is
 * loaded on first use only (it costs tens of milliseconds at startup).
 */
import { promisify } from 'node:util';
import { deflateRaw } from 'node:zlib';
import type { Compression } from './header.js';

const deflateRawAsync = promisify(deflateRaw);

type ZstdCompress = (data: Buffer, level?: number) => Promise<Buffer>;
let zstd: Promise<ZstdCompress> | undefined;

function loadZstd(): Promise<ZstdCompress> {
  zstd ??= import('@mongodb-js/zstd').then((m) => m.compress);
  return zstd;
}

/** Compresses one cluster: raw deflate with a 4 KiB window as qemu writes, or a zstd frame. */
export async function compressCluster(kind: Compression, data: Buffer): Promise<Buffer> {
  if (kind === 'zstd') return (await loadZstd())(data, 3);
  return deflateRawAsync(data, { windowBits: 12, level: 6 });
}

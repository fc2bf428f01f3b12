/**
 * Cluster compression for the writer. Both run off the main thread (zlib in the libuv pool,
 * zstd in its native binding), so several clusters compress at once.
 */
import { promisify } from 'node:util';
import { deflateRaw } from 'node:zlib';
import { compress as zstdCompress } from '@mongodb-js/zstd';
import type { Compression } from './header.js';

const deflateRawAsync = promisify(deflateRaw);

/** Compresses one cluster: raw deflate with a 4 KiB window as qemu writes, or a zstd frame. */
export function compressCluster(kind: Compression, data: Buffer): Promise<Buffer> {
  if (kind === 'zstd') return zstdCompress(data, 3);
  return deflateRawAsync(data, { windowBits: 12, level: 6 });
}

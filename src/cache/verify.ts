/** `cache verify`: recompute each blob's content digest and compare it with its name. */
import { stat } from 'node:fs/promises';
import { RawImage } from '../formats/raw.js';
import { LocalFile } from '../io/file.js';
import { checksumImage } from '../ops/checksum/index.js';
import type { CacheEntry, CacheIndex } from './records.js';

export interface VerifyResult {
  entry: CacheEntry;
  ok: boolean;
  actual?: string;
  problem?: string;
}

export async function verifyEntry(index: CacheIndex, entry: CacheEntry): Promise<VerifyResult> {
  const path = index.layout.blobPath(entry.blob.contentDigest);
  const st = await stat(path).catch(() => undefined);
  if (!st) return { entry, ok: false, problem: 'data file is missing' };
  if (st.size !== entry.blob.virtualSize) {
    return {
      entry,
      ok: false,
      problem: `data file is ${st.size} bytes, record says ${entry.blob.virtualSize}`,
    };
  }
  const image = new RawImage(await LocalFile.open(path, 'r'));
  try {
    const { digest } = await checksumImage(image);
    return digest === entry.blob.contentDigest
      ? { entry, ok: true, actual: digest }
      : { entry, ok: false, actual: digest, problem: 'content digest mismatch' };
  } finally {
    await image.close();
  }
}

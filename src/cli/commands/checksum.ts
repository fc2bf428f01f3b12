import { fstatSync, read } from 'node:fs';
import { ioError, UsageError } from '../../errors.js';
import { type OpenOptions, openImage } from '../../open.js';
import { openStream } from '../../open-stream.js';
import { checkAlgorithm, checkBlockSize, DEFAULT_BLOCK_SIZE } from '../../ops/checksum/blkhash.js';
import {
  type ChecksumOptions,
  type ChecksumResult,
  checksumImage,
  checksumStream,
} from '../../ops/checksum/checksum.js';
import { withoutCredentials } from '../../sources/credentials.js';
import { defineCommand } from '../command.js';
import { noticeUnverified, openOptions, parseSize, print } from '../common.js';
import { flag, value } from '../options.js';
import { ProgressBar } from '../progress.js';
import { PROGRESS_OPTION, READ_OPTIONS } from '../shared-options.js';

/** One entry of `checksum --json` (an array, one per IMAGE, in order). */
export interface ChecksumJson {
  name: string;
  digest: string;
  algorithm: string;
  blockSize: number;
  size: number;
}

export const checksum = defineCommand({
  synopsis:
    'diskpipe checksum [--digest ALG] [--block-size SIZE] [--json] [-p] [--sparsify] IMAGE...',
  summary: [
    'Prints the blkhash content digest of each image, as blksum does: "<hex>  <name>".',
    'The digest covers the guest-visible bytes, so the same disk as raw, qcow2 or compressed',
    'qcow2 gives the same digest. Zero extents are never read. A raw file is hashed at its',
    'exact size (as "blksum < FILE"; blksum FILE pads odd sizes to 512 bytes).',
  ],
  options: {
    digest: value('ALG', 'any digest node:crypto knows (default sha256)'),
    'block-size': value('SIZE', 'blkhash block size, a power of two (default 64K)'),
    json: flag('[{"name","digest","algorithm","blockSize","size"}, ...]'),
    ...PROGRESS_OPTION,
    format: value('FMT', 'do not probe; open as FMT', { short: 'f' }),
    sparsify: flag([
      'hash the image as convert --sparsify would write it: blocks the',
      'guest filesystems mark free count as zeroes, so the digest',
      'describes the sparsified content, not the bytes of IMAGE',
    ]),
    ...READ_OPTIONS,
  },
  operands: { '-': 'as IMAGE: hash the raw bytes of stdin as they arrive' },
  column: 21,
  operandCount: [1, Number.POSITIVE_INFINITY],
  async run(values, names) {
    if (names.filter((n) => n === '-').length > 1) {
      throw new UsageError("stdin ('-') can be read only once");
    }
    if (values.sparsify && names.includes('-')) {
      throw new UsageError('--sparsify needs random access: it cannot read stdin');
    }
    const algorithm = checkAlgorithm(values.digest ?? 'sha256');
    const blockSize = values['block-size']
      ? checkBlockSize(parseSize(values['block-size'], 'block size'))
      : DEFAULT_BLOCK_SIZE;
    const open = noticeUnverified(openOptions(values));
    const results: ChecksumJson[] = [];
    for (const name of names) {
      // The output may end up in logs: a URL's password is never printed.
      const shown = withoutCredentials(name);
      const bar = new ProgressBar({ enabled: values.progress === true, label: shown });
      const opts: ChecksumOptions = {
        digest: algorithm,
        blockSize,
        onProgress: bar.report,
        // A one-shot command may risk SIGBUS on an I/O error under a mapping (see mapFiles).
        mapFiles: true,
      };
      let r: ChecksumResult;
      try {
        r = await hashOne(name, open, opts, values.sparsify === true);
      } finally {
        bar.finish();
      }
      if (values.json) {
        results.push({ name: shown, digest: r.digest, algorithm, blockSize, size: r.size });
      } else print(`${r.digest}  ${shown}`);
    }
    if (values.json) print(JSON.stringify(results, null, 2));
    return 0;
  },
});

/** Hashes one IMAGE argument; `-` is stdin, read sequentially. */
async function hashOne(
  name: string,
  open: OpenOptions,
  opts: ChecksumOptions,
  sparse: boolean,
): Promise<ChecksumResult> {
  if (name === '-') return checksumStream(stdinChunks(), opts);
  // Raw content inside a compressed wrapper is hashed as it decompresses (never staged);
  // sparsify needs random access, so it opens the image (staged if it must be).
  if (sparse) {
    const { sparsify } = await import('../../filters/sparsify/index.js');
    const image = await sparsify(await openImage(name, open));
    try {
      return await checksumImage(image, opts);
    } finally {
      await image.close();
    }
  }
  const opened = await openStream(name, open);
  if (opened.kind === 'stream') {
    try {
      return await checksumStream(opened.stream.chunks(), opts);
    } finally {
      await opened.stream.close();
    }
  }
  const image = opened.image;
  try {
    return await checksumImage(image, opts);
  } finally {
    await image.close();
  }
}

const STDIN_READ = 8 * 1024 * 1024;

/**
 * Stdin as chunks. A regular file (`< FILE`) is read from fd 0 in large requests into one
 * reused buffer (the consumer copies each chunk before asking for the next); pipes and
 * terminals go through process.stdin.
 */
async function* stdinChunks(): AsyncIterable<Uint8Array> {
  let regular = false;
  try {
    regular = fstatSync(0).isFile();
  } catch {
    // No usable fd 0 (closed): let process.stdin report it.
  }
  if (!regular) {
    yield* process.stdin;
    return;
  }
  const buf = Buffer.allocUnsafe(STDIN_READ);
  for (;;) {
    let n: number;
    try {
      n = await readStdin(buf);
    } catch (err) {
      throw ioError(err, 'read error on stdin');
    }
    if (n === 0) return;
    yield buf.subarray(0, n);
  }
}

function readStdin(buf: Buffer): Promise<number> {
  return new Promise((resolve, reject) =>
    read(0, buf, 0, buf.length, null, (err, n) => (err ? reject(err) : resolve(n))),
  );
}

/**
 * What the guided fuzzer runs one input through, per target: the input is written where the
 * parser finds it (an image file, or the bytes an NBD peer sends) and used the way the commands
 * use it. `run` returns a failure (a broken promise of DESIGN.md), or undefined when the input
 * was read or refused properly.
 */
import { AssertionError } from 'node:assert';
import { writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { DiskpipeError } from '../../../src/errors.js';
import { sparsify } from '../../../src/filters/sparsify/index.js';
import { LocalFile } from '../../../src/io/file.js';
import { type NbdServer, startNbdServer } from '../../../src/nbd/server/index.js';
import { openImage } from '../../../src/open.js';
import { checkedExtents } from '../../helpers/extents.js';
import { exercise, type Limits, type Outcome } from '../exercise.js';
import { Rng } from '../mutate.js';
import { VMDK_WORDS } from '../targets.js';
import { replayReplies } from './nbd-replies.js';

export interface GuidedTarget {
  name: string;
  run(input: Uint8Array, ctx: Context): Promise<string | undefined>;
  /** Fields are big-endian (the mutator writes numbers that way mostly). */
  bigEndian?: boolean;
  /** Words and lines of the format's text, for inputs that are text (VMDK descriptors). */
  words?: string[];
}

/** Reads one execution may do before it counts as a hang (a loop that never ends). */
export const MAX_READS = 200_000;
/** What one execution reads of an opened image (exercise.ts). */
export const LIMITS: Limits = { readBytes: 4 << 20, zeroCheckBytes: 1 << 20 };

/** Counts LocalFile reads per execution; past MAX_READS every read fails. */
export class ReadBudget extends Error {
  constructor() {
    super(`hang: more than ${MAX_READS} reads in one execution`);
  }
}
let reads = 0;
const read = LocalFile.prototype.read;
LocalFile.prototype.read = function (this: LocalFile, buf: Uint8Array, offset: number) {
  if (++reads > MAX_READS) return Promise.reject(new ReadBudget());
  return read.call(this, buf, offset);
};
export function resetReads(): void {
  reads = 0;
}

/** A work directory and the peers some targets talk to, made on first use. */
export class Context {
  private fake: Server | undefined;
  private served: NbdServer | undefined;
  /** What the fake NBD server sends to the next client. */
  reply: Uint8Array = new Uint8Array(0);
  readonly serverLog: string[] = [];

  constructor(readonly dir: string) {}

  /** A Unix socket where each client gets `reply` in turns (nbd-replies.ts), then its end. */
  async fakeServer(): Promise<string> {
    const path = join(this.dir, 'fake.sock');
    if (!this.fake) {
      const fake = createServer((s) => replayReplies(s, this.reply));
      await new Promise<void>((resolve) => fake.listen(path, resolve));
      this.fake = fake;
    }
    return path;
  }

  /** diskpipe's NBD server on a Unix socket, serving a small raw image. */
  async realServer(): Promise<string> {
    const path = join(this.dir, 'real.sock');
    if (!this.served) {
      const raw = join(this.dir, 'served.raw');
      const data = new Uint8Array(1 << 20);
      data.fill(0xa5, 0, 65536);
      writeFileSync(raw, data);
      const image = await openImage(raw, { format: 'raw' });
      this.served = await startNbdServer(image, {
        socket: path,
        handshakeTimeout: 3600,
        log: (m) => {
          if (this.serverLog.length < 100) this.serverLog.push(m);
        },
      });
    }
    return path;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) =>
      this.fake ? this.fake.close(() => resolve()) : resolve(),
    );
    await this.served?.close();
  }
}

/** The failure an error means: anything but a DiskpipeError with a clear message. */
export function failureOf(err: unknown): string | undefined {
  if (err instanceof ReadBudget) return err.message;
  if (err instanceof AssertionError) return `contract broken: ${err.message}`;
  if (!(err instanceof DiskpipeError)) {
    const e = err as Error;
    const where = e?.stack?.split('\n').slice(1, 3).join(' | ') ?? '';
    return `not a DiskpipeError: ${e?.name}: ${e?.message ?? String(err)} ${where}`;
  }
  if (/[\x00-\x1f\x7f-\x9f]|undefined|NaN|\[object /.test(err.message)) {
    return `unclear message: ${JSON.stringify(err.message.slice(0, 300))}`;
  }
  return undefined;
}

/**
 * The exercise's failure, if any; it expects the error codes of image files, but any
 * DiskpipeError code is a proper refusal here (NBD_PROTOCOL from a bad server, for one).
 */
function accepted(o: Outcome): string | undefined {
  return o.failure?.startsWith('unexpected error code') ? undefined : o.failure;
}

/** Open the input as an image file named `file` (probed, unwrapped) and use it. */
function imageFile(name: string, file: string, bigEndian = false, words?: string[]): GuidedTarget {
  return {
    name,
    bigEndian,
    ...(words ? { words } : {}),
    async run(input, ctx) {
      const path = join(ctx.dir, file);
      writeFileSync(path, input);
      return accepted(await exercise(path, {}, new Rng(input.length), LIMITS));
    },
  };
}

/** A raw disk with partitions and file systems, through the sparsify filter. */
const sparsifyTarget: GuidedTarget = {
  name: 'sparsify',
  async run(input, ctx) {
    const path = join(ctx.dir, 'disk.raw');
    writeFileSync(path, input);
    try {
      const image = await sparsify(await openImage(path, { format: 'raw' }));
      try {
        const buf = new Uint8Array(65536);
        for (const e of await checkedExtents(image)) {
          if (e.zero) continue;
          await image.read(buf.subarray(0, Math.min(buf.length, e.length)), e.offset);
        }
      } finally {
        await image.close();
      }
    } catch (err) {
      return failureOf(err);
    }
    return undefined;
  },
};

/**
 * A server may answer the same question differently each time (other bytes for a range, other
 * zero flags): diskpipe's client cannot tell, so two answers that disagree are no failure of
 * the nbd-client target. The shape of each answer (extents ordered and covering the range,
 * chunks covering a read) still is checked.
 */
const SERVER_CHANGED_ITS_ANSWER =
  /is zero but byte|differs from aligned reads|^contract broken: extents\(|map says zero=/;

/** The sub-range seed of the nbd-client target's exercise. */
export const NBD_RNG_SEED = 1;

/** The input is what an NBD server answers (handshake and replies) to diskpipe's client. */
const nbdClient: GuidedTarget = {
  name: 'nbd-client',
  bigEndian: true,
  async run(input, ctx) {
    ctx.reply = input;
    const socket = await ctx.fakeServer();
    const spec = `nbd+unix:///?socket=${socket}`;
    // One fixed seed: the requests of the last stage (random sub-ranges) then match the
    // replies recorded for them in the corpus (record-nbd.ts), whatever the input's length.
    const failure = accepted(await exercise(spec, {}, new Rng(NBD_RNG_SEED), LIMITS));
    return failure && SERVER_CHANGED_ITS_ANSWER.test(failure) ? undefined : failure;
  },
};

/** The input is what a client sends to diskpipe's NBD server; it must answer or hang up. */
const nbdServer: GuidedTarget = {
  name: 'nbd-server',
  bigEndian: true,
  async run(input, ctx) {
    const path = await ctx.realServer();
    ctx.serverLog.length = 0;
    await new Promise<void>((resolve) => {
      const s = createConnection(path);
      s.on('error', () => {});
      s.on('data', () => {});
      s.on('close', () => resolve());
      s.end(input);
    });
    const bad = ctx.serverLog.find((m) => /TypeError|RangeError|ReferenceError|undefined/.test(m));
    return bad ? `server log: ${bad}` : undefined;
  },
};

export const guidedTargets: GuidedTarget[] = [
  imageFile('qcow2', 'disk.qcow2'),
  imageFile('vmdk', 'disk.vmdk', false, VMDK_WORDS),
  imageFile('vhd', 'disk.vhd', true),
  imageFile('vhdx', 'disk.vhdx'),
  imageFile('vdi', 'disk.vdi'),
  imageFile('qed', 'disk.qed'),
  imageFile('tar', 'disk.tar'),
  imageFile('ovf', 'appliance.ova'),
  imageFile('gzip', 'disk.gz'),
  imageFile('xz', 'disk.xz'),
  imageFile('zstd', 'disk.zst'),
  imageFile('bz2', 'disk.bz2'),
  sparsifyTarget,
  nbdClient,
  nbdServer,
];

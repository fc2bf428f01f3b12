import { UsageError } from '../../errors.js';
import type { Image, ProgressListener } from '../../image/types.js';
import { isPowerOfTwo } from '../../io/bytes.js';

export const MiB = 1024 * 1024;

export interface CopyOptions {
  /**
   * Largest read request in bytes (64 KiB–8 MiB, default 2 MiB). Measured here, 8 × 2 MiB
   * beat 4 × 4 MiB and 16 × 1 MiB (raw read path 1.1 s vs 2.1–2.3 s for 2 GiB).
   */
  requestSize?: number;
  /** Requests in flight at once (1–64, default 8). Memory is bounded by requests × size. */
  inFlight?: number;
  /**
   * Zero detection granularity inside data (qemu-img -S): aligned blocks of this many bytes
   * that read as zeroes become holes. 0 turns detection off. Default 4 KiB.
   */
  sparseSize?: number;
  /**
   * The target's natural write unit (a qcow2 cluster): work ranges and holes are aligned to
   * it so every write covers whole units. Default 1 (no alignment).
   */
  alignment?: number;
  /**
   * The target already reads as zeroes (a new image, or --target-is-zero): ranges that read
   * as zeroes are not written at all. When false, they are zeroed (punched) on the target.
   */
  targetIsZero?: boolean;
  /**
   * The image the target reads through where it is not written (its backing file). Only
   * ranges whose content differs from `base` are written; zeroes over base data are zeroed.
   * Implies the target starts out reading as `base`.
   */
  base?: Image;
  /** Commit writes strictly in offset order, zero ranges included (a stream target). */
  ordered?: boolean;
  /**
   * Between two local raw files (regular files), how data reaches the target:
   * - default: data is read (zero blocks become holes, as with qemu-img's -S 4k), and the
   *   non-zero runs are copied from the source file by copy_file_range, one thread-pool job
   *   per run instead of one per 256 KiB write piece (falls back to writes where the kernel
   *   refuses, e.g. across filesystems); with `blockingWrites` they are written from the
   *   buffer instead, which costs less CPU than the kernel's second copy;
   * - `true`: whole data extents move with copy_file_range without being read (about 1.6x
   *   faster; the kernel may share blocks on XFS/btrfs), but zero blocks inside allocated
   *   data are copied rather than turned into holes;
   * - `false`: data is read and written, never copy_file_range.
   */
  copyRange?: boolean;
  /**
   * Into a regular local raw file, write data the kernel does not copy by write(2) on the
   * calling thread, a request at a time, instead of a thread-pool job per 256 KiB piece:
   * less CPU and wall time, but the event loop waits for each request's writes (measured
   * here: up to 85 ms when the page cache is slow to grow, against 20 ms). Default false, so
   * an application's event loop stays responsive; the CLI's convert turns it on.
   */
  blockingWrites?: boolean;
  /** Phases `copy` (bytes of the source handled, zero ranges too) and `finish`. */
  onProgress?: ProgressListener;
  /**
   * Sees every source range as the copy handles it (any order): data with the buffer just
   * read (valid only during the call), zero ranges without data. Lets a caller hash in the
   * copy pass instead of reading the target again.
   */
  tap?: CopyTap;
  signal?: AbortSignal;
}

export interface CopyTap {
  data(buf: Uint8Array, offset: number): void;
  zero(offset: number, length: number): void;
}

export interface ResolvedCopyOptions {
  requestSize: number;
  inFlight: number;
  /** Classification block: 0 = whole request is one data block. */
  block: number;
  alignment: number;
  targetMatchesBase: boolean;
  base: Image | undefined;
  ordered: boolean;
  /** 'extents': data extents unread; 'runs': read, then non-zero runs copied; 'off'. */
  copyRange: 'extents' | 'runs' | 'off';
  blockingWrites: boolean;
  onProgress: ProgressListener | undefined;
  tap: CopyTap | undefined;
  signal: AbortSignal | undefined;
}

function bytes(n: number): string {
  if (n >= MiB && n % MiB === 0) return `${n / MiB} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n}`;
}

/**
 * One whole-number option, checked the same way by every operation: absent → `fallback`;
 * outside [min, max] (or not an integer) → a UsageError naming the option and its range.
 */
export function intOption(
  name: string,
  value: number | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(
      `${name} ${value} is out of range: it must be from ${bytes(min)} to ${bytes(max)}`,
    );
  }
  return value;
}

/** Request size and parallelism of operations that read in requests (copy, compare). */
export interface RequestOptions {
  requestSize?: number;
  inFlight?: number;
}

export function resolveRequestOptions(o: RequestOptions): {
  requestSize: number;
  inFlight: number;
} {
  return {
    requestSize: intOption('requestSize', o.requestSize, 2 * MiB, 64 * 1024, 8 * MiB),
    inFlight: intOption('inFlight', o.inFlight, 8, 1, 64),
  };
}

export function resolveCopyOptions(o: CopyOptions): ResolvedCopyOptions {
  const alignment = o.alignment ?? 1;
  if (!isPowerOfTwo(alignment) || alignment > 2 * MiB) {
    throw new UsageError(`alignment ${alignment} must be a power of two up to 2 MiB`);
  }
  const resolved = resolveRequestOptions(o);
  let requestSize = resolved.requestSize;
  const inFlight = resolved.inFlight;
  // Requests end on alignment boundaries so that no write straddles a target unit.
  requestSize = Math.max(alignment, requestSize - (requestSize % alignment));
  const sparse = o.sparseSize ?? 4096;
  if (sparse !== 0 && (!Number.isSafeInteger(sparse) || sparse < 512 || sparse > requestSize)) {
    throw new UsageError(
      `sparseSize ${sparse} is out of range: it must be 0 or from 512 to the request size (${bytes(requestSize)})`,
    );
  }
  if (sparse % 512 !== 0) throw new UsageError(`sparseSize ${sparse} must be a multiple of 512`);
  // A block never splits a target unit; with a base image blocks are compared even with -S 0.
  let block = sparse === 0 ? 0 : Math.max(sparse, alignment);
  if (o.base && block === 0) block = Math.max(alignment, 4096);
  if (block !== 0 && block % alignment !== 0) block += alignment - (block % alignment);
  return {
    requestSize,
    inFlight,
    block,
    alignment,
    targetMatchesBase: o.targetIsZero === true || o.base !== undefined,
    base: o.base,
    ordered: o.ordered === true,
    copyRange: o.copyRange === true ? 'extents' : o.copyRange === false ? 'off' : 'runs',
    blockingWrites: o.blockingWrites === true,
    onProgress: o.onProgress,
    tap: o.tap,
    signal: o.signal,
  };
}

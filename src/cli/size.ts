/** SIZE arguments and environment values, parsed one way everywhere. */
import { UsageError } from '../errors.js';

const UNITS: Record<string, number> = {
  '': 1,
  B: 1,
  K: 2 ** 10,
  M: 2 ** 20,
  G: 2 ** 30,
  T: 2 ** 40,
  P: 2 ** 50,
  E: 2 ** 60,
};

/** SIZE: bytes with an optional K/M/G/T/P/E suffix (powers of 1024), as qemu-img. */
export function parseSize(text: string, what = 'size'): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGTPEB]?)(?:i?B)?$/i.exec(text.trim());
  const unit = m ? UNITS[m[2]!.toUpperCase()] : undefined;
  if (!m || unit === undefined)
    throw new UsageError(`invalid ${what} '${text}' (bytes, or a number with K, M, G or T)`);
  const n = Number(m[1]) * unit;
  if (!Number.isSafeInteger(n))
    throw new UsageError(`invalid ${what} '${text}': not a whole number of bytes up to 2^53`);
  return n;
}

/**
 * `check`: which checker an image gets. Only qcow2 has one; every other format answers
 * "no check" (qemu-img check's exit status 63), decided by -f or by probing. The image checked
 * is the one every other command sees: a tar/OVA member or what a .xz/.gz/.zst/.bz2 holds
 * (staged once, as for any random access), unless -f turns unwrapping off.
 */
import { UsageError } from '../errors.js';
import { formatDriver, formatNames, probeSourceFormat } from '../formats/registry.js';
import '../formats/index.js';
import { type OpenOptions, openUnwrapped } from '../open.js';
import { type CheckResult, checkQcow2 } from './qcow2/check.js';

export type { CheckResult };

export type CheckOutcome =
  | { format: 'qcow2'; result: CheckResult }
  | { format: string; result?: undefined };

export async function checkImage(
  spec: string,
  format?: string,
  opts: OpenOptions = {},
): Promise<CheckOutcome> {
  if (format !== undefined && !formatDriver(format)) {
    throw new UsageError(`unknown format '${format}' (known: ${formatNames().join(', ')})`);
  }
  const { source } = await openUnwrapped(spec, {
    ...opts,
    ...(format !== undefined && { format }),
  });
  try {
    const name = format ?? (await probeSourceFormat(source)).name;
    if (name !== 'qcow2') return { format: name };
    return { format: name, result: await checkQcow2(source) };
  } finally {
    await source.close();
  }
}

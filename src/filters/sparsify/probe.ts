/** Decides, for one partition, which free-space map applies, or why it passes through. */
import { CorruptImageError, OutOfRangeError } from '../../errors.js';
import type { Image } from '../../image/types.js';
import { probeExt } from './ext.js';
import { probeFat } from './fat.js';
import { ascii, PartReader } from './part-reader.js';
import { probeSwap } from './swap.js';
import type { Partition, Verdict } from './types.js';
import { probeXfs } from './xfs.js';

type Probe = (part: PartReader) => Promise<Verdict | undefined>;

const PROBES: Probe[] = [probeExt, probeSwap, probeFat, probeXfs];

export async function probePartition(image: Image, p: Partition): Promise<Verdict> {
  if (p.passReason) return { kind: 'pass', reason: p.passReason };
  const part = new PartReader(image, p.start, p.length);
  const found: Verdict[] = [];
  for (const probe of PROBES) {
    try {
      const v = await probe(part);
      if (v) found.push(v);
    } catch (err) {
      // Metadata that points outside the partition: nothing is dropped here.
      if (err instanceof CorruptImageError || err instanceof OutOfRangeError) {
        return { kind: 'pass', reason: `unreadable metadata: ${err.message}` };
      }
      throw err;
    }
  }
  if (found.length === 1) return found[0]!;
  if (found.length > 1) {
    const names = found.map((v) => v.filesystem ?? '?').join(', ');
    return { kind: 'pass', reason: `ambiguous contents (${names})` };
  }
  return { kind: 'pass', reason: await unknownReason(part) };
}

/** Names what is there when it is something sparsify deliberately leaves alone. */
async function unknownReason(part: PartReader): Promise<string> {
  if (part.length < 4096) return 'no filesystem recognised';
  const head = await part.bytes(0, 4096);
  if (ascii(head, 0, 6) === 'LUKS\xba\xbe') return 'LUKS encrypted volume';
  if (ascii(head, 512, 8) === 'LABELONE') return 'LVM physical volume';
  if (ascii(head, 3, 4) === 'NTFS') return 'NTFS (not read)';
  if (ascii(head, 3, 5) === 'EXFAT') return 'exFAT (not read)';
  return 'no filesystem recognised';
}

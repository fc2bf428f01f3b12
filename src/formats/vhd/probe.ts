import type { FormatProbe } from '../registry.js';
import { hasVhdName, looksLikeFixedVhd } from './fixed-probe.js';
import { hasCookie } from './footer.js';

/**
 * VHD under qemu's name, "vpc". Dynamic and differencing disks (footer copy at offset 0) are
 * probed by their head; a fixed disk (footer only at the end) by a valid fixed-disk footer when
 * its name ends in .vhd or .vpc. Any other fixed disk needs `-f vpc` (`info` says so).
 */
export const vpcProbe: FormatProbe = {
  name: 'vpc',
  probe: (head) => hasCookie(head, 'conectix'),
  probeTail: (tail, size, name) => hasVhdName(name) && looksLikeFixedVhd(tail, size),
};

/** `-f vhd`: the name users expect for the same format (never probed). */
export const vhdAliasProbe: FormatProbe = { name: 'vhd', probe: () => false };

import type { FormatDriver } from '../registry.js';
import { hasVhdName, looksLikeFixedVhd } from './fixed-probe.js';
import { hasCookie } from './footer.js';
import { VhdImage } from './image.js';

/**
 * VHD under qemu's name, "vpc". Dynamic and differencing disks (footer copy at offset 0) are
 * probed by their head; a fixed disk (footer only at the end) by a valid fixed-disk footer when
 * its name ends in .vhd or .vpc. Any other fixed disk needs `-f vpc` (`info` says so).
 */
export const vpcDriver: FormatDriver = {
  name: 'vpc',
  probe: (head) => hasCookie(head, 'conectix'),
  probeTail: (tail, size, name) => hasVhdName(name) && looksLikeFixedVhd(tail, size),
  open: (source, ctx) => VhdImage.open(source, ctx),
};

/** `-f vhd`: the name users expect for the same format (never probed). */
export const vhdAliasDriver: FormatDriver = {
  name: 'vhd',
  probe: () => false,
  open: (source, ctx) => VhdImage.open(source, ctx),
};

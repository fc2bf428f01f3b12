import type { FormatDriver } from '../registry.js';
import { hasCookie } from './footer.js';
import { VhdImage } from './image.js';

/**
 * VHD under qemu's name, "vpc". Like qemu, probing sees only the start of the file, so dynamic
 * and differencing disks (footer copy at offset 0) are detected; a fixed disk (footer only at
 * the end) needs `-f vpc`, or reads as raw with its 512-byte footer.
 */
export const vpcDriver: FormatDriver = {
  name: 'vpc',
  probe: (head) => hasCookie(head, 'conectix'),
  open: (source, ctx) => VhdImage.open(source, ctx),
};

/** `-f vhd`: the name users expect for the same format (never probed). */
export const vhdAliasDriver: FormatDriver = {
  name: 'vhd',
  probe: () => false,
  open: (source, ctx) => VhdImage.open(source, ctx),
};

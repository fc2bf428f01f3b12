import type { FormatDriver } from '../registry.js';
import { VhdImage } from './image.js';
import { vhdAliasProbe, vpcProbe } from './probe.js';

/** VHD under qemu's name, "vpc" (how it is probed: probe.ts). */
export const vpcDriver: FormatDriver = {
  ...vpcProbe,
  open: (source, ctx) => VhdImage.open(source, ctx),
};

/** `-f vhd`: the name users expect for the same format (never probed). */
export const vhdAliasDriver: FormatDriver = {
  ...vhdAliasProbe,
  open: (source, ctx) => VhdImage.open(source, ctx),
};

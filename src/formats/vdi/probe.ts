import type { FormatProbe } from '../registry.js';
import { hasVdiSignature } from './header.js';

export const vdiProbe: FormatProbe = {
  name: 'vdi',
  // A truncated header is still claimed, so that it is refused rather than read as raw.
  probe: (head) => hasVdiSignature(head),
};

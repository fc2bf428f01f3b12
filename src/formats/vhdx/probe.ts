import type { FormatProbe } from '../registry.js';
import { ascii } from '../vhd/bytes.js';

export const vhdxProbe: FormatProbe = {
  name: 'vhdx',
  probe: (head) => head.length >= 8 && ascii(head, 0, 8) === 'vhdxfile',
};

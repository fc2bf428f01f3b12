import type { FormatDriver } from '../registry.js';
import { ascii } from '../vhd/bytes.js';
import { VhdxImage } from './image.js';

export const vhdxDriver: FormatDriver = {
  name: 'vhdx',
  probe: (head) => head.length >= 8 && ascii(head, 0, 8) === 'vhdxfile',
  open: (source) => VhdxImage.open(source),
};

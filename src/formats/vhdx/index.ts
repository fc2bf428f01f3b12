import type { FormatDriver } from '../registry.js';
import { VhdxImage } from './image.js';
import { vhdxProbe } from './probe.js';

export const vhdxDriver: FormatDriver = {
  ...vhdxProbe,
  open: (source) => VhdxImage.open(source),
};

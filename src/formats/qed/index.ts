import type { FormatDriver } from '../registry.js';
import { QedImage } from './image.js';
import { qedProbe } from './probe.js';

export const qedDriver: FormatDriver = {
  ...qedProbe,
  open: (source, ctx) => QedImage.open(source, ctx),
};

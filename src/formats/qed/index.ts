import type { FormatDriver } from '../registry.js';
import { isQed } from './header.js';
import { QedImage } from './image.js';

export const qedDriver: FormatDriver = {
  name: 'qed',
  probe: (head) => isQed(head),
  open: (source, ctx) => QedImage.open(source, ctx),
};

import type { FormatProbe } from '../registry.js';
import { looksLikeDescriptor } from './descriptor.js';
import { COWD_MAGIC, hasMagic, SESPARSE_MAGIC, SPARSE_MAGIC } from './header.js';

export const vmdkProbe: FormatProbe = {
  name: 'vmdk',
  probe: (head) =>
    hasMagic(head, SPARSE_MAGIC) ||
    hasMagic(head, COWD_MAGIC) ||
    hasMagic(head, SESPARSE_MAGIC) ||
    looksLikeDescriptor(head),
};

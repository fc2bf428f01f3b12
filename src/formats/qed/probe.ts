import type { FormatProbe } from '../registry.js';
import { isQed } from './header.js';

export const qedProbe: FormatProbe = { name: 'qed', probe: (head) => isQed(head) };

import type { Command } from '../common.js';
import { checksum } from './checksum.js';

/** Every CLI command, in the order `diskpipe --help` lists them. */
export const commands = new Map<string, Command>([checksum].map((c) => [c.name, c]));

import type { Command } from '../common.js';
import { checksum } from './checksum.js';
import { info } from './info.js';
import { map } from './map.js';

/** Every CLI command, in the order `diskpipe --help` lists them. */
export const commands = new Map<string, Command>([info, map, checksum].map((c) => [c.name, c]));

import type { Command } from '../common.js';

/** Every CLI command, in the order `diskpipe --help` lists them. */
export const commands = new Map<string, Command>(([] as Command[]).map((c) => [c.name, c]));

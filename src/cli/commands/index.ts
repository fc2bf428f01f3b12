import type { Command } from '../common.js';
import { serve } from './serve.js';

/** Every CLI command, in the order `diskpipe --help` lists them. */
export const commands = new Map<string, Command>(([serve] as Command[]).map((c) => [c.name, c]));

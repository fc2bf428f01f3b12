import type { Command } from '../common.js';
import { clone } from './clone.js';
import { compare } from './compare.js';
import { convert } from './convert.js';
import { create } from './create.js';

/** Every CLI command, in the order `diskpipe --help` lists them. */
export const commands = new Map<string, Command>(
  [convert, compare, create, clone].map((c) => [c.name, c]),
);

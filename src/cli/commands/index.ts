import type { Command } from '../common.js';
import { cache } from './cache.js';
import { check } from './check.js';
import { checksum } from './checksum.js';
import { clone } from './clone.js';
import { commit } from './commit.js';
import { compare } from './compare.js';
import { convert } from './convert.js';
import { create } from './create.js';
import { disk } from './disk.js';
import { info } from './info.js';
import { map } from './map.js';
import { measure } from './measure.js';
import { pull } from './pull.js';
import { rebase } from './rebase.js';
import { resize } from './resize.js';
import { serve } from './serve.js';

/** Every CLI command, in the order `diskpipe --help` lists them. */
export const commands = new Map<string, Command>(
  [
    info,
    map,
    convert,
    compare,
    checksum,
    create,
    clone,
    commit,
    resize,
    measure,
    check,
    rebase,
    serve,
    pull,
    disk,
    cache,
  ].map((c) => [c.name, c]),
);

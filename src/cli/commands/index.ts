import type { Command } from '../command.js';

/**
 * Every CLI command, in the order `diskpipe --help` lists them, loaded on first use: a run
 * pays only for the modules of its own command (startup time of `--version`, `info`).
 */
const loaders: [string, () => Promise<Command>][] = [
  ['info', async () => (await import('./info.js')).info],
  ['map', async () => (await import('./map.js')).map],
  ['convert', async () => (await import('./convert.js')).convert],
  ['compare', async () => (await import('./compare.js')).compare],
  ['checksum', async () => (await import('./checksum.js')).checksum],
  ['create', async () => (await import('./create.js')).create],
  ['clone', async () => (await import('./clone.js')).clone],
  ['commit', async () => (await import('./commit.js')).commit],
  ['resize', async () => (await import('./resize.js')).resize],
  ['measure', async () => (await import('./measure.js')).measure],
  ['check', async () => (await import('./check.js')).check],
  ['rebase', async () => (await import('./rebase.js')).rebase],
  ['serve', async () => (await import('./serve.js')).serve],
  ['pull', async () => (await import('./pull.js')).pull],
  ['disk', async () => (await import('./disk.js')).disk],
  ['cache', async () => (await import('./cache.js')).cache],
];
const byName = new Map(loaders);

/** The command called `name`, or undefined for an unknown name. */
export function loadCommand(name: string): Promise<Command> | undefined {
  return byName.get(name)?.();
}

/** Every command (for the usage text). */
export function allCommands(): Promise<Command[]> {
  return Promise.all(loaders.map(([, load]) => load()));
}

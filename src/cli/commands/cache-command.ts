import type { DiskCache } from '../../cache/disk-cache.js';
import { openCache } from '../cache-object.js';
import { type Command, type CommandSpec, defineCommand, type Values } from '../command.js';
import type { OptionTable } from '../options.js';
import { CACHE_DIR_OPTION } from '../shared-options.js';

type CacheOptions<T extends OptionTable> = T & typeof CACHE_DIR_OPTION;

/** A `cache` subcommand: it takes --cache-dir and runs on that cache. */
export function cacheCommand<T extends OptionTable = Record<never, never>>(
  spec: Omit<CommandSpec<CacheOptions<T>>, 'options' | 'run'> & {
    readonly options?: T;
    run(cache: DiskCache, values: Values<CacheOptions<T>>, operands: string[]): Promise<number>;
  },
): Command {
  return defineCommand<CacheOptions<T>>({
    ...spec,
    options: { ...(spec.options as T), ...CACHE_DIR_OPTION },
    run(values, operands) {
      const dir = (values as { 'cache-dir'?: string | undefined })['cache-dir'];
      return spec.run(openCache(dir), values, operands);
    },
  });
}

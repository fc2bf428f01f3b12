import type { Capabilities } from './types.js';

/**
 * A frozen capability set: what is named is on, the rest is off. One spelling for every
 * image, so the five flags are listed in one place.
 */
export function capabilities(on: Partial<Capabilities> = {}): Readonly<Capabilities> {
  return Object.freeze({
    write: false,
    zero: false,
    trim: false,
    flush: false,
    extents: false,
    ...on,
  });
}

/** Nothing but reads (the base's default). */
export const READ_ONLY = capabilities();

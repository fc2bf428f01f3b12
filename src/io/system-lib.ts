/**
 * Loads a system shared library (libzstd, liblzma...) through koffi, once per thread. Each
 * worker thread has its own module state, so a worker loads its own copy (dlopen shares the
 * mapping). Honours the process-wide native switch (setNativeEnabled, DISKPIPE_NO_NATIVE=1):
 * when it is off, or koffi or the library is missing, callers get null and take their
 * portable fallback.
 */
import { createRequire } from 'node:module';
import { isNativeEnabled } from './native.js';

const require = createRequire(import.meta.url);

/** The parts of koffi's API that library bindings use. */
export interface Koffi {
  load(path: string): KoffiLibrary;
  struct(name: string, def: Record<string, string>): unknown;
  decode(ptr: unknown, type: string): unknown;
}
export interface KoffiLibrary {
  func(decl: string): (...args: unknown[]) => unknown;
  func(name: string, result: string, params: string[]): (...args: unknown[]) => unknown;
}

export interface SystemLibrary {
  koffi: Koffi;
  lib: KoffiLibrary;
}

const loaded = new Map<string, SystemLibrary | string>();

/**
 * The first of `names` (sonames, tried in order) that loads, or a string saying why none did.
 * Linux only; results are remembered until the native switch changes.
 */
export function loadSystemLibrary(names: readonly string[]): SystemLibrary | string {
  if (!isNativeEnabled()) return 'disabled (DISKPIPE_NO_NATIVE=1 or setNativeEnabled(false))';
  if (process.platform !== 'linux') return `not on Linux (${process.platform})`;
  const key = names.join(',');
  const known = loaded.get(key);
  if (known !== undefined) return known;
  let result: SystemLibrary | string;
  try {
    const koffi = require('koffi') as Koffi;
    result = `${names.join(' or ')} not found`;
    for (const name of names) {
      try {
        result = { koffi, lib: koffi.load(name) };
        break;
      } catch (err) {
        result = `${name}: ${(err as Error).message}`;
      }
    }
  } catch (err) {
    result = `koffi unavailable: ${(err as Error).message}`;
  }
  loaded.set(key, result);
  return result;
}

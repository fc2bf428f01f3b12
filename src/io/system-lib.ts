/**
 * A system shared library (liblzma, libbz2...) loaded through koffi, once per process or
 * worker. Callers keep a portable fallback: the library may be missing, or native calls may be
 * turned off (setNativeEnabled(false), DISKPIPE_NO_NATIVE=1).
 */
import { createRequire } from 'node:module';
import type * as KoffiModule from 'koffi';
import { isNativeEnabled } from './native.js';

export type Koffi = typeof KoffiModule;
export type LibraryHandle = ReturnType<Koffi['load']>;

/** A bound library function as koffi returns it (arguments and result checked by the caller). */
export type NativeFunction = (...args: unknown[]) => unknown;

export interface SystemLib {
  koffi: Koffi;
  lib: LibraryHandle;
  /** The name it was loaded by (e.g. "liblzma.so.5"). */
  name: string;
}

const require = createRequire(import.meta.url);
const loaded = new Map<string, SystemLib | string>();

/**
 * The first of `names` (sonames, tried in order) that loads, or a string saying why none did
 * (also when native calls are switched off, or not on Linux). Each worker thread has its own
 * module state, so it loads its own handle (dlopen shares the mapping).
 */
export function loadSystemLib(names: readonly string[]): SystemLib | string {
  if (!isNativeEnabled()) return 'disabled (DISKPIPE_NO_NATIVE=1 or setNativeEnabled(false))';
  if (process.platform !== 'linux') return `not on Linux (${process.platform})`;
  const key = names.join(':');
  let hit = loaded.get(key);
  if (hit === undefined) {
    hit = tryLoad(names);
    loaded.set(key, hit);
  }
  return hit;
}

function tryLoad(names: readonly string[]): SystemLib | string {
  let koffi: Koffi;
  try {
    koffi = require('koffi') as Koffi;
  } catch (err) {
    return `koffi unavailable: ${(err as Error).message}`;
  }
  const why: string[] = [];
  for (const name of names) {
    try {
      return { koffi, lib: koffi.load(name), name };
    } catch (err) {
      why.push((err as Error).message);
    }
  }
  return why.join('; ');
}

/**
 * A getter for bindings to libc functions that `declare` makes on first use, kept for this
 * thread; null when they cannot be had (no koffi, native calls off, a missing symbol), and
 * callers then take their portable path.
 */
export function libcBinding<T>(declare: (sys: SystemLib) => T): () => T | null {
  let bound: T | null | undefined;
  return () => {
    if (bound !== undefined) return bound;
    bound = null;
    const sys = loadSystemLib(['libc.so.6']);
    if (typeof sys === 'string') return null;
    try {
      bound = declare(sys);
    } catch {
      bound = null;
    }
    return bound;
  };
}

/**
 * The address of a buffer's first byte, for structs that hold pointers (lzma_stream). Only for
 * memory that never moves: a SharedArrayBuffer or a transferred ArrayBuffer's backing store.
 */
export function addressOf(sys: SystemLib, view: Uint8Array): bigint {
  let identity = identities.get(sys.koffi);
  if (!identity) {
    // memset(p, 0, 0) writes nothing and returns p.
    const memset = sys.koffi.load('libc.so.6').func('void *memset(void *s, int c, size_t n)');
    identity = (v) => sys.koffi.address(memset(v, 0, 0));
    identities.set(sys.koffi, identity);
  }
  return identity(view);
}

const identities = new Map<Koffi, (v: Uint8Array) => bigint>();

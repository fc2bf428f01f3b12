/**
 * VHD disk geometry (cylinders, heads, sectors per track) and the size a new VHD gets. The
 * algorithm is the one in the VHD specification's appendix; like qemu-img (without
 * force_size), a requested size is rounded up to the next size the geometry can express, so
 * that readers which trust the geometry (Virtual PC, qemu) see every byte.
 */
import { UsageError } from '../../errors.js';

export interface Chs {
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
}

/** 65535 × 16 × 255 sectors: the largest geometry. */
export const MAX_GEOMETRY = 65535 * 16 * 255;
/** 2040 GiB in sectors, the largest VHD qemu makes or reads. */
export const MAX_SECTORS = 0xff000000;

/** The geometry for `sectors`, which may cover slightly fewer sectors (the spec's table). */
export function geometryFor(sectors: number): Chs {
  const total = Math.min(sectors, MAX_GEOMETRY);
  let spt: number;
  let heads: number;
  let cth: number;
  if (total >= 65535 * 16 * 63) {
    spt = 255;
    heads = 16;
    cth = Math.floor(total / spt);
  } else {
    spt = 17;
    cth = Math.floor(total / spt);
    heads = Math.max(4, Math.ceil(cth / 1024));
    if (cth >= heads * 1024 || heads > 16) {
      spt = 31;
      heads = 16;
      cth = Math.floor(total / spt);
    }
    if (cth >= heads * 1024) {
      spt = 63;
      heads = 16;
      cth = Math.floor(total / spt);
    }
  }
  return { cylinders: Math.floor(cth / heads), heads, sectorsPerTrack: spt };
}

function sectorsOf(g: Chs): number {
  return g.cylinders * g.heads * g.sectorsPerTrack;
}

/**
 * The virtual size and geometry of a new VHD of `requested` bytes (rounded up to sectors).
 * Default: the smallest geometry that holds it, its size being the geometry's (or, past the
 * largest geometry, the requested size). `forceSize`: exactly the requested size.
 */
export function vhdSize(requested: number, forceSize: boolean): { size: number; chs: Chs } {
  const sectors = Math.ceil(requested / 512);
  if (forceSize) {
    if (sectors > MAX_SECTORS) throw tooLarge(requested);
    return { size: sectors * 512, chs: geometryFor(sectors) };
  }
  let chs: Chs = { cylinders: 0, heads: 0, sectorsPerTrack: 0 };
  const wanted = Math.min(MAX_GEOMETRY, sectors);
  for (let i = 0; wanted > sectorsOf(chs); i++) chs = geometryFor(wanted + i);
  if (sectorsOf(chs) === MAX_GEOMETRY) {
    if (sectors > MAX_SECTORS) throw tooLarge(requested);
    return { size: sectors * 512, chs };
  }
  return { size: sectorsOf(chs) * 512, chs };
}

function tooLarge(size: number): UsageError {
  return new UsageError(`${size} bytes is larger than the VHD limit of 2040 GiB`);
}

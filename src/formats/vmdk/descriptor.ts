/**
 * The VMDK text descriptor: a few `key=value` lines, the extent lines and the disk database.
 * It is embedded in a monolithic sparse file or stands alone next to its extent files.
 */
import { CorruptImageError, UnsupportedFeatureError } from '../../errors.js';
import { MAX_CAPACITY_SECTORS } from './header.js';

/** Largest descriptor diskpipe reads (qemu reads at most 1 MiB too). */
export const MAX_DESCRIPTOR_BYTES = 1 << 20;
/** Most extent lines one descriptor may have (a 8 TiB twoGbMaxExtent image has 4096). */
export const MAX_EXTENTS = 4096;
/** CID value meaning "no parent". */
export const NO_PARENT_CID = 0xffffffff;

export type ExtentType = 'SPARSE' | 'FLAT' | 'ZERO' | 'VMFS';

export interface ExtentLine {
  access: 'RW' | 'RDONLY';
  sectors: number;
  type: ExtentType;
  /** File reference as written in the descriptor (absent for ZERO). */
  file?: string;
  /** Start of the extent inside a flat file, in sectors. */
  offset: number;
}

export interface Descriptor {
  version?: number;
  cid?: number;
  parentCid?: number;
  createType?: string;
  parentFileNameHint?: string;
  extents: ExtentLine[];
}

const TEXT_DECODER = new TextDecoder('utf-8');

/** Types and create types VMware defines that diskpipe recognises but does not read. */
const REFUSED_EXTENT_TYPES: Record<string, string> = {
  VMFSSPARSE: 'VMFS sparse (COWD) extents',
  SESPARSE: 'seSparse extents',
  VMFSRDM: 'raw device mapping extents',
  VMFSRAW: 'raw device extents',
};

const REFUSED_CREATE_TYPES = new Set([
  'vmfsSparse',
  'seSparse',
  'vmfsRaw',
  'vmfsRDM',
  'vmfsRDMP',
  'vmfsPassthroughRawDeviceMap',
  'fullDevice',
  'partitionedDevice',
]);

/**
 * True when `head` looks like a descriptor file: the '# Disk DescriptorFile' banner, or (as
 * qemu accepts) comment and blank lines followed by a `version=1|2|3` line.
 */
export function looksLikeDescriptor(head: Uint8Array): boolean {
  const text = latin1(head.subarray(0, Math.min(head.length, 1024)));
  if (text.startsWith('# Disk DescriptorFile')) return true;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) continue;
    return /^version=[123]$/.test(line);
  }
  return false;
}

function latin1(buf: Uint8Array): string {
  let s = '';
  for (const b of buf) s += String.fromCharCode(b);
  return s;
}

/** Decodes descriptor bytes: text up to the first NUL (qemu pads with zeroes). */
export function descriptorText(buf: Uint8Array): string {
  const nul = buf.indexOf(0);
  return TEXT_DECODER.decode(nul >= 0 ? buf.subarray(0, nul) : buf);
}

/**
 * Parses a descriptor; `who` names the file in messages. An embedded descriptor's extent lines
 * only describe the file itself, so they are skipped (`extents: false`).
 */
export function parseDescriptor(text: string, who: string, extents = true): Descriptor {
  const d: Descriptor = { extents: [] };
  let total = 0;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) continue;
    if (!extents && EXTENT_START.test(line)) continue;
    const extent = parseExtentLine(line, who);
    if (extent) {
      if (d.extents.length >= MAX_EXTENTS) {
        throw new CorruptImageError(`${who}: more than ${MAX_EXTENTS} extents`);
      }
      total += extent.sectors;
      if (total > MAX_CAPACITY_SECTORS) {
        throw new CorruptImageError(`${who}: extents add up to an absurd size`);
      }
      d.extents.push(extent);
      continue;
    }
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq).trim();
    const value = unquote(line.slice(eq + 1).trim());
    if (key === 'version') d.version = Number.parseInt(value, 10);
    else if (key === 'CID') d.cid = parseCid(value, 'CID', who);
    else if (key === 'parentCID') d.parentCid = parseCid(value, 'parentCID', who);
    else if (key === 'createType') d.createType = value;
    else if (key === 'parentFileNameHint') d.parentFileNameHint = value;
  }
  return d;
}

/** Refuses create types diskpipe recognises but does not read, by name. */
export function checkCreateType(d: Descriptor, who: string): void {
  if (d.createType && REFUSED_CREATE_TYPES.has(d.createType)) {
    throw new UnsupportedFeatureError(
      `${who}: VMDK create type '${d.createType}' is not supported`,
    );
  }
}

function unquote(v: string): string {
  return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
}

function parseCid(v: string, what: string, who: string): number {
  if (!/^[0-9a-fA-F]{1,8}$/.test(v)) throw new CorruptImageError(`${who}: invalid ${what} '${v}'`);
  return Number.parseInt(v, 16);
}

const EXTENT_START = /^(RW|RDONLY|NOACCESS)\s/;
const EXTENT_RE = /^(RW|RDONLY|NOACCESS)\s+(\d+)\s+([A-Z]+)(?:\s+"([^"]*)"(?:\s+(\d+))?)?\s*$/;

/** One extent line, or undefined when the line is not an extent line at all. */
function parseExtentLine(line: string, who: string): ExtentLine | undefined {
  if (!EXTENT_START.test(line)) return undefined;
  const m = EXTENT_RE.exec(line);
  if (!m) throw new CorruptImageError(`${who}: invalid extent line '${line}'`);
  const [, access, sectorText, type, file, offsetText] = m;
  if (access === 'NOACCESS') {
    throw new UnsupportedFeatureError(`${who}: NOACCESS extents are not supported`);
  }
  const refused = REFUSED_EXTENT_TYPES[type!];
  if (refused) throw new UnsupportedFeatureError(`${who}: VMDK ${refused} are not supported`);
  if (type !== 'SPARSE' && type !== 'FLAT' && type !== 'ZERO' && type !== 'VMFS') {
    throw new UnsupportedFeatureError(`${who}: VMDK extent type '${type}' is not supported`);
  }
  const sectors = Number(sectorText);
  const offset = offsetText === undefined ? 0 : Number(offsetText);
  if (!Number.isSafeInteger(sectors) || sectors <= 0 || sectors > MAX_CAPACITY_SECTORS) {
    throw new CorruptImageError(`${who}: invalid extent size in '${line}'`);
  }
  if (!Number.isSafeInteger(offset) || offset > MAX_CAPACITY_SECTORS) {
    throw new CorruptImageError(`${who}: invalid extent offset in '${line}'`);
  }
  if (type === 'ZERO') {
    if (file !== undefined) throw new CorruptImageError(`${who}: ZERO extent names a file`);
  } else if (file === undefined || file === '') {
    throw new CorruptImageError(`${who}: ${type} extent without a file name`);
  }
  if (type === 'SPARSE' && offsetText !== undefined) {
    throw new CorruptImageError(`${who}: SPARSE extent with an offset in '${line}'`);
  }
  return {
    access: access as 'RW' | 'RDONLY',
    sectors,
    type,
    ...(file !== undefined ? { file } : {}),
    offset,
  };
}

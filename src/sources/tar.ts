/**
 * Tar archives (and OVA, which is a tar) read in place: the headers are walked on the byte
 * source and a member is exposed as a slice of it, never extracted. ustar, GNU (long names,
 * base-256 sizes) and pax (path, size) headers are understood; sparse members are listed but
 * refused. Member names are only compared, never used as host paths.
 */
import {
  CorruptImageError,
  NotFoundError,
  UnsupportedFeatureError,
  withOptionHint,
} from '../errors.js';
import { probeFormat } from '../formats/registry.js';
import type { ByteSource } from '../image/types.js';
import { detectCompression } from './decompress/detect.js';
import { ovfDiskFiles } from './ovf.js';
import { ascii, BLOCK, checksumOk, parseOctal } from './tar-probe.js';

export { looksLikeTar } from './tar-probe.js';

const MAX_ENTRIES = 100_000;
/** Longest pax header or GNU long name accepted. */
const MAX_META = 1 << 20;
const MAX_OVF = 4 << 20;

export interface TarEntry {
  name: string;
  /** Tar type flag ('0' regular file, '5' directory, 'S' GNU sparse...). */
  type: string;
  /** Offset of the member's bytes in the archive. */
  offset: number;
  size: number;
  /** Stored as a sparse member (GNU or pax sparse): its bytes cannot be read in place. */
  sparse: boolean;
}

export function isRegular(e: TarEntry): boolean {
  return e.type === '0' || e.type === '\0' || e.type === '7' || e.type === 'S';
}

/** Lists the members of a tar archive. */
export async function listTar(source: ByteSource): Promise<TarEntry[]> {
  const entries: TarEntry[] = [];
  const block = new Uint8Array(BLOCK);
  let pos = 0;
  let longName: string | undefined;
  let pax: Map<string, string> | undefined;
  for (;;) {
    if (pos + BLOCK > source.size) {
      if (entries.length > 0 && pos === source.size) break; // some writers omit the end blocks
      throw new CorruptImageError(`${source.name}: tar archive is truncated at offset ${pos}`);
    }
    await readExact(source, block, pos);
    if (block.every((b) => b === 0)) break;
    if (!checksumOk(block))
      throw new CorruptImageError(`${source.name}: bad tar header checksum at offset ${pos}`);
    if (entries.length >= MAX_ENTRIES)
      throw new UnsupportedFeatureError(`${source.name}: more than ${MAX_ENTRIES} tar members`);
    const type = String.fromCharCode(block[156]!);
    let size = headerSize(block, source.name, pos);
    let dataAt = pos + BLOCK;
    let sparse = type === 'S';
    if (sparse && block[482] !== 0) dataAt = await skipSparseExtensions(source, dataAt);
    if (dataAt + size > source.size)
      throw new CorruptImageError(`${source.name}: tar member at ${pos} runs past the end`);
    const next = dataAt + Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'L' || type === 'x' || type === 'g' || type === 'K') {
      if (size > MAX_META)
        throw new CorruptImageError(`${source.name}: tar metadata of ${size} bytes at ${pos}`);
      const data = new Uint8Array(size);
      await readExact(source, data, dataAt);
      if (type === 'L') longName = cString(data);
      if (type === 'x') pax = parsePax(data, source.name);
      pos = next;
      continue;
    }
    let name = longName ?? headerName(block);
    // GNU pax sparse members keep their real name in GNU.sparse.name.
    const paxPath = pax?.get('GNU.sparse.name') ?? pax?.get('path');
    if (paxPath !== undefined) name = paxPath;
    const paxSize = pax?.get('size');
    if (paxSize !== undefined) {
      size = Number(paxSize);
      if (!/^\d+$/.test(paxSize) || !Number.isSafeInteger(size) || dataAt + size > source.size)
        throw new CorruptImageError(`${source.name}: bad pax size '${paxSize}' at ${pos}`);
    }
    if (pax && [...pax.keys()].some((k) => k.startsWith('GNU.sparse.'))) sparse = true;
    entries.push({ name: cleanName(name), type, offset: dataAt, size, sparse });
    longName = undefined;
    pax = undefined;
    pos = dataAt + Math.ceil(size / BLOCK) * BLOCK;
  }
  return entries;
}

export interface MemberOptions {
  /** The member to open (--member); default: the first disk in OVF order, else the first disk. */
  member?: string | undefined;
}

/** Opens the chosen member of a tar archive as a byte source that owns the archive. */
export async function openTarMember(
  archive: ByteSource,
  opts: MemberOptions = {},
): Promise<TarMember> {
  const entries = await listTar(archive);
  const entry = opts.member
    ? findMember(entries, opts.member, archive.name)
    : await defaultMember(archive, entries);
  if (entry.sparse) {
    throw new UnsupportedFeatureError(
      `${archive.name}: member '${entry.name}' is stored sparse in the archive; extract it first`,
    );
  }
  return new TarMember(archive, entry);
}

/** One tar member: a window onto the archive's bytes. Closing it closes the archive. */
export class TarMember implements ByteSource {
  constructor(
    private readonly archive: ByteSource,
    readonly entry: TarEntry,
  ) {}

  get name(): string {
    return `${this.archive.name}:${printable(this.entry.name)}`;
  }

  get size(): number {
    return this.entry.size;
  }

  async read(buf: Uint8Array, offset: number): Promise<number> {
    const n = Math.max(0, Math.min(buf.length, this.entry.size - offset));
    if (n === 0) return 0;
    return this.archive.read(buf.subarray(0, n), this.entry.offset + offset);
  }

  close(): Promise<void> {
    return this.archive.close();
  }
}

function findMember(entries: TarEntry[], wanted: string, archive: string): TarEntry {
  const want = cleanName(wanted);
  const hit = entries.find((e) => isRegular(e) && e.name === want);
  if (hit) return hit;
  throw new NotFoundError(
    `${archive}: no member '${printable(wanted)}' (members: ${memberList(entries)})`,
  );
}

const DISK_NAME = /\.(vmdk|qcow2?|img|raw|vhdx?|vdi|vpc|disk)(\.(xz|gz|zst|bz2))?$/i;
const NOT_DISK = /\.(ovf|mf|cert|nvram|txt|xml|json)$/i;

/** The first disk in OVF order; without an OVF descriptor, the first member that is a disk. */
async function defaultMember(archive: ByteSource, entries: TarEntry[]): Promise<TarEntry> {
  const files = entries.filter((e) => isRegular(e));
  const ovf = files.find((e) => /\.ovf$/i.test(e.name));
  if (ovf) {
    if (ovf.size > MAX_OVF)
      throw new CorruptImageError(`${archive.name}: OVF descriptor of ${ovf.size} bytes`);
    const text = new Uint8Array(ovf.size);
    await readExact(archive, text, ovf.offset);
    const hrefs = ovfDiskFiles(new TextDecoder().decode(text));
    for (const href of hrefs) {
      const hit = files.find((e) => e.name === cleanName(href));
      if (hit) return hit;
    }
    if (hrefs.length > 0) {
      throw new CorruptImageError(
        `${archive.name}: the OVF descriptor names disk '${printable(hrefs[0]!)}', which the archive does not hold`,
      );
    }
  }
  const byName = files.find((e) => DISK_NAME.test(e.name));
  if (byName) return byName;
  for (const e of files) {
    if (NOT_DISK.test(e.name) || e.sparse || e.size === 0) continue;
    const head = new Uint8Array(Math.min(4096, e.size));
    await readExact(archive, head, e.offset);
    if (detectCompression(head) || probeFormat(head, e.size).name !== 'raw') return e;
  }
  throw withOptionHint(
    new NotFoundError(
      `${archive.name}: no disk image found in the archive (members: ${memberList(entries)})`,
    ),
    { option: 'member', advice: '; pick one with --member' },
  );
}

function memberList(entries: TarEntry[]): string {
  const names = entries.filter(isRegular).map((e) => printable(e.name));
  if (names.length === 0) return 'none';
  return names.length > 20 ? `${names.slice(0, 20).join(', ')}, ...` : names.join(', ');
}

async function readExact(source: ByteSource, buf: Uint8Array, offset: number): Promise<void> {
  const n = await source.read(buf, offset);
  if (n !== buf.length)
    throw new CorruptImageError(`${source.name}: tar archive is truncated at offset ${offset + n}`);
}

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end >= 0 ? bytes.subarray(0, end) : bytes);
}

/** The size field: octal, or GNU base-256 for sizes of 8 GiB and more. */
function headerSize(block: Uint8Array, archive: string, pos: number): number {
  const field = block.subarray(124, 136);
  let v: number | undefined;
  if (field[0]! & 0x80) {
    if (field[0] !== 0x80)
      v = undefined; // negative or absurd
    else {
      v = 0;
      for (let i = 1; i < field.length; i++) v = v * 256 + field[i]!;
      if (!Number.isSafeInteger(v)) v = undefined;
    }
  } else {
    v = parseOctal(field);
  }
  if (v === undefined) throw new CorruptImageError(`${archive}: bad tar size field at ${pos}`);
  return v;
}

function headerName(block: Uint8Array): string {
  const name = cString(block.subarray(0, 100));
  // POSIX ustar ("ustar\0" "00") splits long names into prefix/name; GNU uses those bytes
  // for other fields.
  const posix = ascii(block.subarray(257, 263)) === 'ustar\0';
  const prefix = posix ? cString(block.subarray(345, 500)) : '';
  return prefix ? `${prefix}/${name}` : name;
}

/** Old GNU sparse headers may continue in extension blocks before the data. */
async function skipSparseExtensions(source: ByteSource, at: number): Promise<number> {
  const ext = new Uint8Array(BLOCK);
  for (let i = 0; i < MAX_ENTRIES; i++) {
    await readExact(source, ext, at);
    at += BLOCK;
    if (ext[504] === 0) return at;
  }
  throw new CorruptImageError(`${source.name}: endless GNU sparse header at ${at}`);
}

/** pax records: "LEN key=value\n", LEN counting the bytes of the whole record. */
function parsePax(data: Uint8Array, archive: string): Map<string, string> {
  const out = new Map<string, string>();
  const utf8 = new TextDecoder();
  let at = 0;
  while (at < data.length && data[at] !== 0) {
    const space = data.indexOf(0x20, at);
    const len = space > at ? Number(ascii(data.subarray(at, space))) : Number.NaN;
    if (!Number.isSafeInteger(len) || len <= space - at + 1 || at + len > data.length)
      throw new CorruptImageError(`${archive}: bad pax header record`);
    const record = utf8.decode(data.subarray(space + 1, at + len - 1));
    const eq = record.indexOf('=');
    if (eq > 0) out.set(record.slice(0, eq), record.slice(eq + 1));
    at += len;
  }
  return out;
}

/** Normalised member name for matching: no leading "./" or "/", no trailing "/". */
function cleanName(name: string): string {
  return name.replace(/^(\.\/|\/)+/, '').replace(/\/+$/, '');
}

function printable(name: string): string {
  return name.replace(/[\x00-\x1f\x7f]/g, '?');
}

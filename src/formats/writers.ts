/**
 * The one place output formats are registered: what `convert -O` and `create -f` accept, the
 * `-o` options each format takes, and how to start its writer. raw and qcow2 have their own
 * paths in convert/create (devices, -n, backing files, compression); every other format is a
 * writer here: an Image that takes write/zero calls (in any order, or strictly in offset order
 * when `ordered`), completes the file on `close()` and abandons it on `discard()`.
 */
import { basename } from 'node:path';
import type { Writable } from 'node:stream';
import { UsageError } from '../errors.js';
import type { Image } from '../image/types.js';
import type { LocalFile } from '../io/file.js';

export const OUTPUT_FORMATS = ['raw', 'qcow2', 'vmdk', 'vhdx', 'vpc', 'vdi'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];
export type WriterFormat = Exclude<OutputFormat, 'raw' | 'qcow2'>;

/** `-o key=value,...` as given (qemu-img's option names). */
export type FormatOptions = Readonly<Record<string, string>>;

export interface ImageWriter extends Image {
  close(): Promise<void>;
  discard(): Promise<void>;
}

export interface NewImage {
  /** Virtual size requested (a format may round it up: sectors, VHD geometry). */
  size: number;
  /** The final path of the image (some formats record their own name). */
  path: string;
  options: FormatOptions;
  /** fdatasync when complete. */
  sync?: boolean;
}

interface WriterEntry {
  /** The -o keys and the values each accepts (undefined: any size). */
  options: Readonly<Record<string, readonly string[] | 'size'>>;
  /** True when writes must come in offset order. */
  ordered(o: FormatOptions): boolean;
  create(file: LocalFile, o: NewImage): Promise<ImageWriter>;
  /** Writes the image into a stream (stdout), for the ordered formats that allow it. */
  stream?(out: Writable, o: NewImage): Promise<ImageWriter>;
}

const ON_OFF = ['on', 'off'] as const;

/** Each writer's modules load on first use: a raw or qcow2 convert never pays for them. */
const WRITERS: Record<WriterFormat, WriterEntry> = {
  vmdk: {
    options: { subformat: ['monolithicSparse', 'streamOptimized'] },
    ordered: (o) => o.subformat === 'streamOptimized',
    create: async (file, n) => {
      const { VmdkSparseWriter, VmdkStreamWriter } = await import('./vmdk/writer/index.js');
      const opts = { size: n.size, fileName: basename(n.path), sync: n.sync === true };
      return n.options.subformat === 'streamOptimized'
        ? VmdkStreamWriter.create(file, opts)
        : VmdkSparseWriter.create(file, opts);
    },
    stream: async (out, n) => {
      const { StreamSink, VmdkStreamWriter } = await import('./vmdk/writer/index.js');
      return VmdkStreamWriter.create(new StreamSink(out), {
        size: n.size,
        fileName: basename(n.path === '-' ? 'disk.vmdk' : n.path),
      });
    },
  },
  vpc: {
    options: { subformat: ['dynamic', 'fixed'], force_size: ON_OFF },
    ordered: () => false,
    create: async (file, n) => {
      const { VhdDynamicWriter, VhdFixedWriter } = await import('./vhd/writer.js');
      const opts = {
        size: n.size,
        forceSize: n.options.force_size === 'on',
        sync: n.sync === true,
      };
      return n.options.subformat === 'fixed'
        ? VhdFixedWriter.create(file, opts)
        : VhdDynamicWriter.create(file, opts);
    },
  },
  vhdx: {
    options: { subformat: ['dynamic'], block_size: 'size' },
    ordered: () => false,
    create: async (file, n) => {
      const { VhdxWriter } = await import('./vhdx/writer.js');
      const bs = n.options.block_size;
      return VhdxWriter.create(file, {
        size: n.size,
        blockSize: bs === undefined ? undefined : parseByteSize(bs),
        sync: n.sync === true,
      });
    },
  },
  vdi: {
    options: {},
    ordered: () => false,
    create: async (file, n) => {
      const { VdiWriter } = await import('./vdi/writer.js');
      return VdiWriter.create(file, { size: n.size, sync: n.sync === true });
    },
  },
};

/** -o options of the formats convert and create write themselves. */
const BUILT_IN_OPTIONS: Record<'raw' | 'qcow2', WriterEntry['options']> = {
  raw: {},
  qcow2: { cluster_size: 'size' },
};

/** A qcow2 output's cluster size: --cluster-size, else `-o cluster_size` (K/M/G/T suffixes). */
export function clusterSizeOption(
  clusterSize: number | undefined,
  o: FormatOptions,
): number | undefined {
  const v = o.cluster_size;
  return clusterSize ?? (v === undefined ? undefined : parseByteSize(v));
}

function isOutputFormat(f: string): f is OutputFormat {
  return (OUTPUT_FORMATS as readonly string[]).includes(f);
}

/**
 * `format` as an output format whose options `o` are all known (else a usage error; `refusal`
 * begins the message for an unknown format, the list of known ones ends it).
 */
export function outputFormat(format: string, o: FormatOptions, refusal: string): OutputFormat {
  if (!isOutputFormat(format)) {
    throw new UsageError(`${refusal} (raw, qcow2, vmdk, vhdx, vpc or vdi)`);
  }
  checkFormatOptions(format, o);
  return format;
}

export function isWriterFormat(f: string): f is WriterFormat {
  return Object.hasOwn(WRITERS, f);
}

function parseByteSize(text: string): number {
  const m = /^(\d+)([KMGT]?)$/i.exec(text);
  const n = m ? Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase()) : Number.NaN;
  if (!Number.isSafeInteger(n)) throw new UsageError(`invalid size '${text}'`);
  return n;
}

/** Parses `-o key=value,...` (a later key wins, as in qemu-img). */
export function parseFormatOptions(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (text === undefined || text === '') return out;
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new UsageError(`invalid -o option '${part}' (expected key=value)`);
    out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

/** Throws a usage error naming any option `format` does not take, or a value it refuses. */
function checkFormatOptions(format: OutputFormat, o: FormatOptions): void {
  const known = isWriterFormat(format) ? WRITERS[format].options : BUILT_IN_OPTIONS[format];
  for (const [key, value] of Object.entries(o)) {
    const allowed = known[key];
    if (allowed === undefined) {
      const names = Object.keys(known);
      throw new UsageError(
        `the ${format} format does not take the option '${key}'` +
          (names.length > 0 ? ` (it takes: ${names.join(', ')})` : ''),
      );
    }
    if (allowed === 'size') parseByteSize(value);
    else if (!allowed.includes(value)) {
      throw new UsageError(`-o ${key}=${value}: expected ${allowed.join(' or ')}`);
    }
  }
}

/** True when the writer for `format` needs writes in offset order. */
export function writerIsOrdered(format: WriterFormat, o: FormatOptions): boolean {
  return WRITERS[format].ordered(o);
}

/** Starts a writer for a new image in `file` (opened for writing; its content is replaced). */
export function createWriter(
  format: WriterFormat,
  file: LocalFile,
  image: NewImage,
): Promise<ImageWriter> {
  checkFormatOptions(format, image.options);
  return WRITERS[format].create(file, image);
}

/** True when `format` with options `o` can be written to a stream (stdout). */
export function canStream(format: OutputFormat, o: FormatOptions): boolean {
  return (
    isWriterFormat(format) && WRITERS[format].stream !== undefined && writerIsOrdered(format, o)
  );
}

/** Starts a writer that sends the image to `out` front to back (see canStream). */
export function createStreamWriter(
  format: WriterFormat,
  out: Writable,
  image: NewImage,
): Promise<ImageWriter> {
  checkFormatOptions(format, image.options);
  const entry = WRITERS[format];
  if (!entry.stream || !entry.ordered(image.options)) {
    throw new UsageError(`-O ${format} cannot be written to a stream`);
  }
  return entry.stream(out, image);
}

/**
 * Unwrapping: a compressed file or a tar/OVA member is replaced by what it holds, layer by
 * layer (an .ova whose disk is gzip-compressed, a .tar.xz...). Wrappers are recognised by
 * their bytes (the name only helps for magic-less old tars). Anything found inside a wrapper
 * is untrusted: it may not reference other files.
 *
 * Compressed layers are sequential. One-pass consumers can take raw content as a stream;
 * everything else (a qcow2 inside .xz, a tar inside .gz, random access) is staged once to a
 * temporary sparse file.
 */
import { CorruptImageError, UsageError } from '../errors.js';
import { PROBE_BYTES, probeFormat } from '../formats/registry.js';
import type { ByteSource } from '../image/types.js';
import type { LocalFile } from '../io/file.js';
import { type Compression, detectCompression, SUFFIX } from './decompress/detect.js';
import type { DecompressOptions } from './decompress/index.js';
import { type OpenedSource, openSource, type SourceOptions } from './index.js';
import { Peekable, readStdin, type SequentialSource } from './sequential.js';
import type { StageOptions } from './stage.js';
import { looksLikeTar } from './tar-probe.js';

export interface UnwrapOptions extends DecompressOptions, StageOptions {
  /** The tar/OVA member to open (--member). */
  member?: string;
  /** Raw content inside a compressed layer comes back as a stream (else it is staged). */
  preferStream?: boolean;
}

/** Wrapper layers followed before giving up (a bomb of nested wrappers is refused). */
const MAX_LAYERS = 8;

export type Unwrapped =
  | { kind: 'source'; source: ByteSource; untrusted: boolean; layers: string[] }
  | { kind: 'stream'; stream: SequentialSource };

/**
 * Removes every wrapper around an opened source. With `opts.preferStream`, raw content inside
 * a compressed layer comes back as a stream; otherwise compressed layers are staged.
 * Takes ownership of `opened.source` (closed on failure, or owned by the result).
 */
export async function unwrapSource(opened: OpenedSource, opts: UnwrapOptions): Promise<Unwrapped> {
  const preferStream = opts.preferStream === true;
  let source = opened.source;
  let untrusted = opened.untrusted;
  let member = opts.member;
  const layers: string[] = [];
  try {
    for (;;) {
      if (layers.length > MAX_LAYERS)
        throw new CorruptImageError(`${source.name}: more than ${MAX_LAYERS} nested wrappers`);
      const buf = new Uint8Array(Math.min(PROBE_BYTES, source.size));
      const head = buf.subarray(0, await source.read(buf, 0));
      const kind = detectCompression(head);
      if (kind) {
        const outer = source;
        const chunks = decompress(kind, outer, outer.name, opts);
        layers.push(kind);
        const settled = await settle(chunks, innerName(outer.name, kind), layers, {
          ...opts,
          preferStream: preferStream && member === undefined,
          untrusted: true,
          closeInner: () => outer.close(),
        });
        if (settled.kind === 'stream') return settled;
        source = settled.source;
        untrusted = true;
        continue;
      }
      if (looksLikeTar(head, source.name)) {
        layers.push('tar');
        source = await (await import('./tar.js')).openTarMember(source, { member });
        member = undefined;
        untrusted = true;
        continue;
      }
      if (member !== undefined)
        throw new UsageError(`--member ${member}: ${source.name} is not a tar or OVA archive`);
      return { kind: 'source', source, untrusted, layers };
    }
  } catch (err) {
    await source.close().catch(() => {});
    throw err;
  }
}

/** Opens IMAGE (a path, URL or `-`) for random access, every wrapper removed (staged if need be). */
export async function unwrapToSource(
  spec: string,
  opts: UnwrapOptions & SourceOptions,
): Promise<OpenedSource> {
  const r =
    spec === '-'
      ? await unwrapStdin({ ...opts, preferStream: false })
      : await unwrapSource(await openSource(spec, sourceOptions(opts)), {
          ...opts,
          preferStream: false,
        });
  // Without preferStream, streams are always staged.
  return r as OpenedSource;
}

/** Opens a named tar member of `archive` (taking ownership of it). */
export async function openMemberOf(archive: ByteSource, member: string): Promise<ByteSource> {
  try {
    return await (await import('./tar.js')).openTarMember(archive, { member });
  } catch (err) {
    await archive.close().catch(() => {});
    throw err;
  }
}

/**
 * Stdin (`-`) unwrapped the same way. A pipe has no directory of its own, so whatever comes
 * through it is untrusted: it may not reference other files.
 */
export function unwrapStdin(opts: UnwrapOptions): Promise<Unwrapped> {
  return settle(readStdin(), 'stdin', [], {
    ...opts,
    preferStream: opts.preferStream === true,
    untrusted: true,
    closeInner: async () => {},
  }).then(async (r) => (r.kind === 'stream' ? r : unwrapSource(r, opts)));
}

interface SettleOptions extends UnwrapOptions {
  preferStream: boolean;
  untrusted: boolean;
  /** Releases what produces the chunks (the compressed file, a download). */
  closeInner: () => Promise<void>;
}

/**
 * Decides what a sequential stream is: more compression (unwrapped on the fly), raw content
 * (a stream, when wanted), or something that needs random access (staged to a file).
 */
async function settle(
  chunks: AsyncIterable<Uint8Array>,
  name: string,
  layers: string[],
  opts: SettleOptions,
): Promise<
  | { kind: 'stream'; stream: SequentialSource }
  | (OpenedSource & { kind: 'source'; layers: string[] })
> {
  let peek = new Peekable(chunks);
  let staged: LocalFile;
  try {
    for (;;) {
      const head = await peek.peek(PROBE_BYTES);
      const kind = detectCompression(head);
      if (kind && layers.length <= MAX_LAYERS) {
        layers.push(kind);
        peek = new Peekable(decompress(kind, peek.chunks(), name, opts));
        name = innerName(name, kind);
        continue;
      }
      if (kind) throw new CorruptImageError(`${name}: more than ${MAX_LAYERS} nested wrappers`);
      const raw =
        !looksLikeTar(head, name) && probeFormat(head, Number.MAX_SAFE_INTEGER).name === 'raw';
      if (raw && opts.preferStream) {
        return { kind: 'stream', stream: new DecompressedStream(peek, name, layers, opts) };
      }
      // Staging loads only for a stream that needs it (a plain local image never does).
      const [{ stageToFile }, { stageLimit }] = await Promise.all([
        import('./stage.js'),
        import('./stage-limit.js'),
      ]);
      staged = await stageToFile(peek.chunks(), name, opts, stageLimit(head, opts));
      break;
    }
  } catch (err) {
    await peek.close().catch(() => {});
    await opts.closeInner().catch(() => {});
    throw err;
  }
  await opts.closeInner();
  return { kind: 'source', source: staged, untrusted: opts.untrusted || layers.length > 0, layers };
}

/** Raw content coming out of one or more decompressors. */
class DecompressedStream implements SequentialSource {
  readonly format = 'raw';
  readonly size = undefined;
  readonly untrusted: boolean;
  private closed = false;

  constructor(
    private readonly peek: Peekable,
    readonly name: string,
    readonly layers: readonly string[],
    private readonly opts: SettleOptions,
  ) {
    this.untrusted = opts.untrusted || layers.length > 0;
  }

  chunks(): AsyncIterable<Uint8Array> {
    return this.peek.chunks();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.peek.close().catch(() => {});
    await this.opts.closeInner();
  }
}

/** "disk.qcow2.xz" → "disk.qcow2": what the inside is called, for messages and staging. */
function innerName(name: string, kind: Compression): string {
  const inner = name.replace(SUFFIX[kind], '');
  return inner === name ? `${name}[${kind}]` : inner;
}

/** What opening the outermost source needs of the options. */
function sourceOptions(opts: UnwrapOptions & SourceOptions): SourceOptions {
  return {
    http: opts.http,
    ...(opts.signal && { signal: opts.signal }),
    ...(opts.refuseWritten && { refuseWritten: true }),
  };
}

/**
 * decompress() with the decoders (≈ 20 modules, 50 ms to load here) loaded on first use: an
 * image that is not compressed never loads them. Nothing runs before the first chunk is asked
 * for, as with the generator it stands for.
 */
async function* decompress(
  kind: Compression,
  input: AsyncIterable<Uint8Array> | ByteSource,
  label: string,
  opts?: DecompressOptions,
): AsyncGenerator<Uint8Array> {
  const decoders = await import('./decompress/index.js');
  yield* decoders.decompress(kind, input, label, opts);
}

/**
 * The VMDK driver: a monolithic sparse or stream-optimized file ('KDMV'), or a text
 * descriptor whose extent files (sparse, flat, zero) are opened through the trust rule.
 */
import { CorruptImageError, UnsupportedFeatureError, WrongFormatError } from '../../errors.js';
import { RefusedFile } from '../../image/refused-file.js';
import type { ByteSource, Image } from '../../image/types.js';
import { readExact } from '../host-io.js';
import type { FormatDriver, OpenContext } from '../registry.js';
import {
  checkCreateType,
  type Descriptor,
  descriptorText,
  type ExtentLine,
  looksLikeDescriptor,
  MAX_DESCRIPTOR_BYTES,
  NO_PARENT_CID,
  parseDescriptor,
} from './descriptor.js';
import type { VmdkExtent } from './extent.js';
import { FlatExtent, ZeroExtent } from './flat.js';
import { COWD_MAGIC, hasMagic, SECTOR, SESPARSE_MAGIC, SPARSE_MAGIC } from './header.js';
import { VmdkImage } from './image.js';
import { vmdkProbe } from './probe.js';
import { RefusedExtent } from './refused-extent.js';
import { ExtentBudget, SparseExtent } from './sparse.js';

export { VmdkImage } from './image.js';

export const vmdkDriver: FormatDriver = {
  ...vmdkProbe,
  open: openVmdk,
};

async function openVmdk(source: ByteSource, ctx: OpenContext): Promise<Image> {
  const head = new Uint8Array(Math.min(source.size, SECTOR));
  await readExact(source, head, 0, 'the header');
  if (hasMagic(head, COWD_MAGIC)) {
    throw new UnsupportedFeatureError(
      `${source.name}: VMFS sparse (COWD, VMDK3) images are not supported`,
    );
  }
  if (hasMagic(head, SESPARSE_MAGIC)) {
    throw new UnsupportedFeatureError(`${source.name}: VMDK seSparse images are not supported`);
  }
  if (hasMagic(head, SPARSE_MAGIC)) return openMonolithic(source, ctx);
  if (looksLikeDescriptor(head)) return openDescriptorFile(source, ctx);
  throw new WrongFormatError(`${source.name}: not a VMDK image`);
}

async function openMonolithic(source: ByteSource, ctx: OpenContext): Promise<Image> {
  const sparse = await SparseExtent.open(source, '');
  const bytes = await sparse.descriptorBytes();
  const desc =
    bytes.length > 0 ? parseDescriptor(descriptorText(bytes), source.name, false) : undefined;
  if (desc) checkCreateType(desc, source.name);
  const createType =
    desc?.createType ?? (sparse.compressed ? 'streamOptimized' : 'monolithicSparse');
  const backing = desc ? await openParent(desc, source, ctx) : undefined;
  const info = {
    createType,
    cid: desc?.cid,
    parentCid: desc?.parentCid,
    parentFileNameHint: backing ? desc?.parentFileNameHint : undefined,
    actualSize: await allocated([source]),
  };
  return new VmdkImage(source, [sparse], info, backing);
}

async function openDescriptorFile(source: ByteSource, ctx: OpenContext): Promise<Image> {
  if (source.size > MAX_DESCRIPTOR_BYTES) {
    throw new CorruptImageError(`${source.name}: VMDK descriptor file is larger than 1 MiB`);
  }
  const bytes = await readExact(source, new Uint8Array(source.size), 0, 'the descriptor');
  const desc = parseDescriptor(descriptorText(bytes), source.name);
  checkCreateType(desc, source.name);
  if (!desc.createType) throw new CorruptImageError(`${source.name}: descriptor has no createType`);
  if (desc.extents.length === 0) {
    throw new CorruptImageError(`${source.name}: descriptor lists no extents`);
  }
  const files: ByteSource[] = [];
  const budget = new ExtentBudget(desc.extents.filter((l) => l.type === 'SPARSE').length);
  try {
    const extents: VmdkExtent[] = [];
    for (const line of desc.extents) {
      extents.push(await openExtent(line, source, ctx, files, budget));
    }
    const backing = await openParent(desc, source, ctx);
    const info = {
      createType: desc.createType,
      cid: desc.cid,
      parentCid: desc.parentCid,
      parentFileNameHint: backing ? desc.parentFileNameHint : undefined,
      actualSize: await allocated([source, ...files]),
    };
    return new VmdkImage(source, extents, info, backing);
  } catch (err) {
    await Promise.allSettled(files.map((f) => f.close()));
    throw err;
  }
}

async function openExtent(
  line: ExtentLine,
  source: ByteSource,
  ctx: OpenContext,
  files: ByteSource[],
  budget: ExtentBudget,
): Promise<VmdkExtent> {
  const size = line.sectors * SECTOR;
  if (line.type === 'ZERO') return new ZeroExtent(size);
  const file = await ctx.openReferencedFile(line.file!, source, 'extent file');
  files.push(file);
  if (file instanceof RefusedFile) return new RefusedExtent(line.type, size, file);
  if (line.type === 'SPARSE') return SparseExtent.open(file, 'SPARSE', size, budget);
  return FlatExtent.open(line.type, file, size, line.offset * SECTOR);
}

/** A delta link's parent, opened through the trust rule; its CID must match parentCID. */
async function openParent(
  desc: Descriptor,
  source: ByteSource,
  ctx: OpenContext,
): Promise<Image | undefined> {
  if (desc.parentCid === undefined || desc.parentCid === NO_PARENT_CID) return undefined;
  const hint = desc.parentFileNameHint;
  if (!hint) {
    throw new UnsupportedFeatureError(
      `${source.name}: VMDK delta link without parentFileNameHint is not supported`,
    );
  }
  const parent = await ctx.openBacking(hint, source, 'vmdk');
  const cid = parent instanceof VmdkImage ? parent.info.cid : undefined;
  if (cid !== desc.parentCid) {
    await parent.close().catch(() => {});
    throw new CorruptImageError(
      `${source.name}: parent '${hint}' has CID ${hex(cid)}, expected ${hex(desc.parentCid)} (the parent changed after this image was made)`,
    );
  }
  return parent;
}

function hex(n: number | undefined): string {
  return n === undefined ? 'none' : n.toString(16).padStart(8, '0');
}

async function allocated(files: ByteSource[]): Promise<number | undefined> {
  let total = 0;
  for (const f of new Set(files)) {
    const n = f.allocatedSize ? await f.allocatedSize() : undefined;
    if (n === undefined) return undefined;
    total += n;
  }
  return total;
}

/** The VDI driver: VirtualBox dynamic and static (fixed) images, version 1.1. */
import { CorruptImageError } from '../../errors.js';
import type { ByteSource, Image } from '../../image/types.js';
import { readExact } from '../host-io.js';
import type { FormatDriver } from '../registry.js';
import { HEADER_BYTES, parseVdiHeader } from './header.js';
import { VdiImage } from './image.js';
import { vdiProbe } from './probe.js';

export { VdiImage } from './image.js';

export const vdiDriver: FormatDriver = {
  ...vdiProbe,
  open: openVdi,
};

async function openVdi(source: ByteSource): Promise<Image> {
  if (source.size < HEADER_BYTES) {
    throw new CorruptImageError(`${source.name}: file is too small for a VDI header`);
  }
  const head = await readExact(source, new Uint8Array(HEADER_BYTES), 0, 'the VDI header');
  const header = parseVdiHeader(head, source.name);
  const mapBytes = header.blocksInImage * 4;
  if (header.offsetBmap + mapBytes > source.size) {
    throw new CorruptImageError(`${source.name}: VDI block map is past the end of the file`);
  }
  if (header.offsetData > source.size) {
    throw new CorruptImageError(`${source.name}: VDI data offset is past the end of the file`);
  }
  const raw = await readExact(source, new Uint8Array(mapBytes), header.offsetBmap, 'the block map');
  const view = new DataView(raw.buffer, raw.byteOffset, raw.length);
  const bmap = new Uint32Array(header.blocksInImage);
  for (let i = 0; i < bmap.length; i++) bmap[i] = view.getUint32(i * 4, true);
  const actual = source.allocatedSize ? await source.allocatedSize() : undefined;
  return new VdiImage(source, header, bmap, actual);
}

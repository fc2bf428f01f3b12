/**
 * Test-only writer for stream-optimized VMDKs laid out as VMware writes them (qemu does not):
 * header with gdOffset = GD_AT_END, grains with markers, grain tables and the directory after
 * the data, each behind a metadata marker, then a footer (a second header) and end-of-stream.
 * The tests check qemu-img reads these files as the source, then check diskpipe does too.
 */
import { deflateRawSync, deflateSync } from 'node:zlib';

const SECTOR = 512;
const GD_AT_END = 0xffffffffffffffffn;

export interface StreamOptions {
  grainSectors?: number;
  /** Write bare deflate instead of zlib-wrapped grains. */
  raw?: boolean;
  /** Replaces a grain's compressed bytes (hostile tests). */
  encode?: (grain: number, compressed: Buffer) => Buffer;
}

function pad(buf: Buffer): Buffer {
  const rem = buf.length % SECTOR;
  return rem === 0 ? buf : Buffer.concat([buf, Buffer.alloc(SECTOR - rem)]);
}

function header(capacity: number, grainSectors: number, gdOffset: bigint, descSectors: number) {
  const h = Buffer.alloc(SECTOR);
  h.write('KDMV', 0, 'latin1');
  h.writeUInt32LE(3, 4); // version
  h.writeUInt32LE(1 | (1 << 16) | (1 << 17), 8); // newline test, compressed, markers
  h.writeBigUInt64LE(BigInt(capacity), 12);
  h.writeBigUInt64LE(BigInt(grainSectors), 20);
  h.writeBigUInt64LE(1n, 28); // descriptor at sector 1
  h.writeBigUInt64LE(BigInt(descSectors), 36);
  h.writeUInt32LE(512, 44); // GTEs per GT
  h.writeBigUInt64LE(0n, 48); // no redundant GD
  h.writeBigUInt64LE(gdOffset, 56);
  h.writeBigUInt64LE(BigInt(1 + descSectors), 64); // overhead: grains follow the descriptor
  h.set([0x0a, 0x20, 0x0d, 0x0a], 73);
  h.writeUInt16LE(1, 77); // deflate
  return h;
}

function marker(value: number, type: number): Buffer {
  const m = Buffer.alloc(SECTOR);
  m.writeBigUInt64LE(BigInt(value), 0);
  m.writeUInt32LE(0, 8);
  m.writeUInt32LE(type, 12);
  return m;
}

/** Encodes `data` (a whole disk, sector multiple) as a VMware-style stream-optimized VMDK. */
export function streamOptimized(data: Buffer, opts: StreamOptions = {}): Buffer {
  const grainSectors = opts.grainSectors ?? 128;
  const grainBytes = grainSectors * SECTOR;
  const capacity = data.length / SECTOR;
  const grains = Math.ceil(data.length / grainBytes);
  const tables = Math.ceil(grains / 512);
  const desc = pad(
    Buffer.from(
      '# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n' +
        'createType="streamOptimized"\n\n# Extent description\n' +
        `RW ${capacity} SPARSE "generated.vmdk"\n\n# The Disk Data Base\n#DDB\n\n` +
        'ddb.adapterType = "lsilogic"\n',
    ),
  );
  const descSectors = desc.length / SECTOR;
  const parts: Buffer[] = [header(capacity, grainSectors, GD_AT_END, descSectors), desc];
  let sector = 1 + descSectors;
  const push = (b: Buffer) => {
    parts.push(b);
    sector += b.length / SECTOR;
  };
  const gtes = Buffer.alloc(tables * 2048);
  for (let g = 0; g < grains; g++) {
    const chunk = data.subarray(g * grainBytes, Math.min(data.length, (g + 1) * grainBytes));
    if (chunk.every((b) => b === 0)) continue;
    const deflated = opts.raw ? deflateRawSync(chunk) : deflateSync(chunk);
    const z = opts.encode ? opts.encode(g, deflated) : deflated;
    const rec = Buffer.alloc(12 + z.length);
    rec.writeBigUInt64LE(BigInt(g * grainSectors), 0);
    rec.writeUInt32LE(z.length, 8);
    z.copy(rec, 12);
    gtes.writeUInt32LE(sector, g * 4);
    push(pad(rec));
  }
  const gd = Buffer.alloc(tables * 4);
  for (let t = 0; t < tables; t++) {
    push(marker(4, 1)); // grain table marker: 4 sectors follow
    gd.writeUInt32LE(sector, t * 4);
    push(gtes.subarray(t * 2048, (t + 1) * 2048));
  }
  const gdPadded = pad(gd);
  push(marker(gdPadded.length / SECTOR, 2));
  const gdSector = sector;
  push(gdPadded);
  push(marker(1, 3)); // footer marker
  push(header(capacity, grainSectors, BigInt(gdSector), descSectors));
  push(Buffer.alloc(SECTOR)); // end of stream
  return Buffer.concat(parts);
}

/** CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as VHDX checksums use. */

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32c(buf: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < buf.length; i++) c = TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** The CRC-32C of `buf` with its 4-byte little-endian checksum field at `at` counted as zero. */
export function checksumWithField(buf: Uint8Array, at: number): number {
  const before = crc32c(buf.subarray(0, at));
  const zeroed = crc32c(new Uint8Array(4), before);
  return crc32c(buf.subarray(at + 4), zeroed);
}

/** True when the little-endian checksum stored at `at` matches the buffer. */
export function checksumValid(buf: Uint8Array, at: number): boolean {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return dv.getUint32(at, true) === checksumWithField(buf, at);
}

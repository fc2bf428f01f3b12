/**
 * LUKS1 images written directly, following the LUKS1 on-disk format specification.
 * `qemu-img create -f luks` benchmarks PBKDF2 to pick its iteration count, which took 8-23 s
 * on a loaded machine; this writes a complete header (master key digest and one usable key
 * slot, aes-xts-plain64 / sha256) with a fixed small iteration count in milliseconds.
 */
import { createCipheriv, createHash, pbkdf2Sync, randomBytes } from 'node:crypto';
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';

const SECTOR = 512;
const KEY_BYTES = 64; // aes-256 in XTS mode: two 256-bit keys
const STRIPES = 4000; // the only stripe count the specification (and qemu) accept
const ITERATIONS = 1000; // the specification's minimum
const SLOTS = 8;
const SLOT_ACTIVE = 0x00ac71f3;
const SLOT_DISABLED = 0x0000dead;
/** Sectors of key material per slot (4000 stripes of 64 bytes), rounded up to 4 KiB. */
const SLOT_SECTORS = Math.ceil((STRIPES * KEY_BYTES) / 4096) * (4096 / SECTOR);
/** Data starts at 2 MiB, after the header and eight key slots (as cryptsetup lays it out). */
export const LUKS_PAYLOAD_OFFSET = 2 * 1024 * 1024;

/** The hash diffusion of the anti-forensic splitter: each digest-sized block hashed with its index. */
function diffuse(block: Buffer): Buffer {
  const out = Buffer.alloc(block.length);
  const digestSize = 32;
  for (let i = 0; i * digestSize < block.length; i++) {
    const part = block.subarray(i * digestSize, (i + 1) * digestSize);
    const index = Buffer.alloc(4);
    index.writeUInt32BE(i);
    const h = createHash('sha256').update(index).update(part).digest();
    h.copy(out, i * digestSize, 0, part.length);
  }
  return out;
}

/** AF-splits `key` into `STRIPES` stripes: all but the last random, the last one mixing them. */
function afSplit(key: Buffer): Buffer {
  const stripes = randomBytes(STRIPES * key.length);
  let d: Buffer = Buffer.alloc(key.length);
  for (let i = 0; i < STRIPES - 1; i++) {
    const s = stripes.subarray(i * key.length, (i + 1) * key.length);
    for (let j = 0; j < d.length; j++) d[j] = (d[j] as number) ^ (s[j] as number);
    d = diffuse(d);
  }
  const last = stripes.subarray((STRIPES - 1) * key.length);
  for (let j = 0; j < key.length; j++) last[j] = (d[j] as number) ^ (key[j] as number);
  return stripes;
}

/** aes-xts-plain64: each 512-byte sector encrypted with its index (from 0) as the tweak. */
function encryptSectors(key: Buffer, data: Buffer): Buffer {
  const padded = Buffer.alloc(Math.ceil(data.length / SECTOR) * SECTOR);
  data.copy(padded);
  const out = Buffer.alloc(padded.length);
  for (let s = 0; s * SECTOR < padded.length; s++) {
    const iv = Buffer.alloc(16);
    iv.writeBigUInt64LE(BigInt(s));
    const c = createCipheriv('aes-256-xts', key, iv);
    const sector = padded.subarray(s * SECTOR, (s + 1) * SECTOR);
    Buffer.concat([c.update(sector), c.final()]).copy(out, s * SECTOR);
  }
  return out;
}

function field(b: Buffer, offset: number, length: number, text: string): void {
  b.write(text, offset, length, 'latin1');
}

/**
 * Writes a LUKS1 image of `payloadBytes` guest bytes whose key slot 0 opens with `passphrase`
 * (qemu: `--object secret,id=s0,data=PASSPHRASE` and `key-secret=s0`). Returns `path`.
 */
export function writeLuks1(path: string, payloadBytes: number, passphrase = 'diskpipe'): string {
  const masterKey = randomBytes(KEY_BYTES);
  const h = Buffer.alloc(592);
  h.set([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]); // "LUKS\xba\xbe"
  h.writeUInt16BE(1, 6);
  field(h, 8, 32, 'aes');
  field(h, 40, 32, 'xts-plain64');
  field(h, 72, 32, 'sha256');
  h.writeUInt32BE(LUKS_PAYLOAD_OFFSET / SECTOR, 104);
  h.writeUInt32BE(KEY_BYTES, 108);
  const digestSalt = randomBytes(32);
  pbkdf2Sync(masterKey, digestSalt, ITERATIONS, 20, 'sha256').copy(h, 112);
  digestSalt.copy(h, 132);
  h.writeUInt32BE(ITERATIONS, 164);
  field(h, 168, 40, '3b8c4e1a-5f0d-4c1e-9a57-2d6b0f7e9c31');

  const fd = openSync(path, 'w');
  try {
    for (let i = 0; i < SLOTS; i++) {
      const at = 208 + i * 48;
      const materialSector = 8 + i * SLOT_SECTORS;
      h.writeUInt32BE(i === 0 ? SLOT_ACTIVE : SLOT_DISABLED, at);
      h.writeUInt32BE(i === 0 ? ITERATIONS : 0, at + 4);
      h.writeUInt32BE(materialSector, at + 40);
      h.writeUInt32BE(STRIPES, at + 44);
      if (i !== 0) continue;
      const salt = randomBytes(32);
      salt.copy(h, at + 8);
      const slotKey = pbkdf2Sync(passphrase, salt, ITERATIONS, KEY_BYTES, 'sha256');
      const material = encryptSectors(slotKey, afSplit(masterKey));
      writeSync(fd, material, 0, material.length, materialSector * SECTOR);
    }
    writeSync(fd, h, 0, h.length, 0);
    ftruncateSync(fd, LUKS_PAYLOAD_OFFSET + payloadBytes);
  } finally {
    closeSync(fd);
  }
  return path;
}

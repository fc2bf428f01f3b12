import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { deflateSync } from 'node:zlib';
import { collectExtents } from '../../src/image/extents.js';
import { type OpenOptions, openImage } from '../../src/open.js';
import { readAll } from '../helpers/extents.js';
import { qemuImg, sparseFile, tempDir } from '../helpers/peers.js';
import { streamOptimized } from './vmdk-stream-writer.js';
import { MiB, mixedRaw } from './vmdk-vdi-peer.js';

const root = tempDir('diskpipe-vmdk-hostile-');
const dir = join(root, 'images');
mkdirSync(dir);
const outside = join(root, 'outside');
mkdirSync(outside);
const src = await mixedRaw(dir);
const srcBytes = readFileSync(src);

const sparse = join(dir, 'good-sparse.vmdk');
await qemuImg('convert', '-O', 'vmdk', src, sparse);
const stream = join(dir, 'good-stream.vmdk');
await qemuImg('convert', '-O', 'vmdk', '-o', 'subformat=streamOptimized', src, stream);

/** Writes a patched copy of `from` as `name` and returns its path. */
function patched(from: string, name: string, edit: (b: Buffer) => void): string {
  const buf = readFileSync(from);
  edit(buf);
  const path = join(dir, name);
  writeFileSync(path, buf);
  return path;
}

/** Sector of the primary grain directory and of grain table 0 in a qemu sparse file. */
function layout(buf: Buffer) {
  const gd = Number(buf.readBigUInt64LE(56));
  const gt0 = buf.readUInt32LE(gd * 512);
  return { gd, gt0, gte0: buf.readUInt32LE(gt0 * 512) };
}

/** Opens, reads everything and walks extents: any of these must fail with `code`. */
async function rejects(path: string, code: string, message?: RegExp, opts?: OpenOptions) {
  await assert.rejects(
    (async () => {
      const image = await openImage(path, opts);
      try {
        await collectExtents(image.extents());
        await readAll(image);
      } finally {
        await image.close();
      }
    })(),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, code, `${err.code}: ${err.message}`);
      if (message) assert.match(err.message, message);
      return true;
    },
  );
}

function descriptor(name: string, lines: string[], extra = ''): string {
  const path = join(dir, name);
  writeFileSync(
    path,
    `# Disk DescriptorFile\nversion=1\nCID=11111111\nparentCID=ffffffff\n${extra}# Extent description\n${lines.join('\n')}\n`,
  );
  return path;
}

test('vmdk hostile: grain directory past the end of the file', async () => {
  const path = patched(sparse, 'gd-eof.vmdk', (b) => b.writeBigUInt64LE(0x7fffffffn, 56));
  await rejects(path, 'CORRUPT', /grain directory/);
});

test('vmdk hostile: grain directory entry pointing past the end', async () => {
  const path = patched(sparse, 'gt-eof.vmdk', (b) => {
    b.writeUInt32LE(0x7fffff00, layout(b).gd * 512);
  });
  await rejects(path, 'CORRUPT', /grain table 0 .* past the end/);
});

test('vmdk hostile: grain table entry pointing past the end', async () => {
  const path = patched(sparse, 'gte-eof.vmdk', (b) => {
    b.writeUInt32LE(0x7fffff00, layout(b).gt0 * 512);
  });
  await rejects(path, 'CORRUPT', /grain 0 .* past the end/);
  // The rest of the image still reads: only grain 0 is broken.
  const image = await openImage(path);
  const buf = Buffer.alloc(MiB);
  await image.read(buf, MiB);
  assert.deepEqual(buf, srcBytes.subarray(MiB, 2 * MiB));
  await image.close();
});

test('vmdk hostile: absurd capacity, grain size and table size', async () => {
  const cases: [string, (b: Buffer) => void, RegExp][] = [
    ['cap-huge', (b) => b.writeBigUInt64LE(1n << 60n, 12), /capacity/],
    [
      'gd-huge',
      (b) => {
        b.writeBigUInt64LE(1n << 40n, 12);
        b.writeBigUInt64LE(1n, 20);
        b.writeUInt32LE(1, 44);
      },
      /grain directory of \d+ entries is too large/,
    ],
    ['grain-zero', (b) => b.writeBigUInt64LE(0n, 20), /grain size/],
    ['grain-huge', (b) => b.writeBigUInt64LE(1n << 40n, 20), /grain size|absurd/],
    ['gt-huge', (b) => b.writeUInt32LE(1 << 20, 44), /grain table size/],
    ['overhead', (b) => b.writeBigUInt64LE(1n << 30n, 64), /truncated/],
  ];
  for (const [name, edit, message] of cases) {
    await rejects(patched(sparse, `${name}.vmdk`, edit), 'CORRUPT', message);
  }
  await rejects(
    patched(sparse, 'v4.vmdk', (b) => b.writeUInt32LE(4, 4)),
    'UNSUPPORTED',
    /version 4/,
  );
  await rejects(
    patched(sparse, 'algo.vmdk', (b) => b.writeUInt16LE(7, 77)),
    'UNSUPPORTED',
    /compression algorithm 7/,
  );
});

test('vmdk hostile: truncated files', async () => {
  const short = patched(sparse, 'trunc-header.vmdk', () => {});
  truncateSync(short, 300);
  // 300 bytes of 'KDMV' are still probed as VMDK and refused as corrupt.
  await rejects(short, 'CORRUPT', /too small/);
  const mid = patched(sparse, 'trunc-data.vmdk', () => {});
  truncateSync(mid, 600 * 1024);
  await rejects(mid, 'CORRUPT', /past the end/);
  const s = patched(stream, 'trunc-stream.vmdk', () => {});
  truncateSync(s, 70_000); // the grains start at 64 KiB
  await rejects(s, 'CORRUPT');
});

test('vmdk hostile: compressed grains with bogus sizes or data', async () => {
  const gte0 = layout(readFileSync(stream)).gte0 * 512;
  await rejects(
    patched(stream, 'csize-huge.vmdk', (b) => b.writeUInt32LE(0x7fffffff, gte0 + 8)),
    'CORRUPT',
    /invalid compressed size/,
  );
  await rejects(
    patched(stream, 'csize-zero.vmdk', (b) => b.writeUInt32LE(0, gte0 + 8)),
    'CORRUPT',
    /invalid compressed size/,
  );
  await rejects(
    patched(stream, 'csize-short.vmdk', (b) => b.writeUInt32LE(5, gte0 + 8)),
    'CORRUPT',
    /does not inflate/,
  );
  await rejects(
    patched(stream, 'cdata.vmdk', (b) => b.fill(0x5a, gte0 + 14, gte0 + 40)),
    'CORRUPT',
    /does not inflate/,
  );
  // A grain that inflates to more than a grain (a small zip bomb) is refused, not buffered.
  const bomb = join(dir, 'bomb.vmdk');
  writeFileSync(
    bomb,
    streamOptimized(srcBytes, {
      encode: (g, z) => (g === 0 ? deflateSync(Buffer.alloc(64 * MiB)) : z),
    }),
  );
  await rejects(bomb, 'CORRUPT', /does not inflate/);
});

test('vmdk hostile: invalid stream-optimized footer', async () => {
  const good = streamOptimized(srcBytes);
  const path = join(dir, 'bad-footer.vmdk');
  const bad = Buffer.from(good);
  bad.writeUInt32LE(9, bad.length - 1536 + 12); // footer marker type
  writeFileSync(path, bad);
  await rejects(path, 'CORRUPT', /footer/);
});

test('vmdk hostile: extents outside the image directory are refused', async () => {
  const passwd = descriptor(
    'passwd.vmdk',
    ['RW 8 FLAT "/etc/passwd" 0'],
    'createType="monolithicFlat"\n',
  );
  await rejects(passwd, 'UNTRUSTED_REFERENCE', /\/etc\/passwd/);
  sparseFile(join(outside, 'secret.bin'), MiB);
  const dotdot = descriptor(
    'dotdot.vmdk',
    ['RW 2048 FLAT "../outside/secret.bin" 0'],
    'createType="monolithicFlat"\n',
  );
  await rejects(dotdot, 'UNTRUSTED_REFERENCE', /--allow-backing/);
  // Allowed explicitly, the same descriptor opens.
  const image = await openImage(dotdot, { allowBacking: [outside] });
  assert.equal(image.size, MiB);
  await image.close();
  // An untrusted image may not reference any file, even next to it.
  const flat = join(dir, 'flat.vmdk');
  await qemuImg('convert', '-O', 'vmdk', '-o', 'subformat=monolithicFlat', src, flat);
  await rejects(flat, 'UNTRUSTED_REFERENCE', /untrusted/, { untrusted: true });
});

test('vmdk hostile: descriptors that lie', async () => {
  writeFileSync(join(dir, 'small.bin'), Buffer.alloc(4096));
  const cases: [string, string[], string, string, RegExp][] = [
    ['short-flat', ['RW 100 FLAT "small.bin" 0'], 'monolithicFlat', 'CORRUPT', /flat extent needs/],
    ['bad-line', ['RW x FLAT "small.bin" 0'], 'monolithicFlat', 'CORRUPT', /invalid extent line/],
    ['no-file', ['RW 8 FLAT "missing.bin" 0'], 'monolithicFlat', 'NOT_FOUND', /missing\.bin/],
    ['not-sparse', ['RW 8 SPARSE "small.bin"'], 'twoGbMaxExtentSparse', 'CORRUPT', /magic/],
    [
      'huge',
      ['RW 17592186044000 ZERO', 'RW 17592186044000 ZERO'],
      'monolithicFlat',
      'CORRUPT',
      /absurd/,
    ],
    ['vmfssparse', ['RW 8 VMFSSPARSE "small.bin"'], 'custom', 'UNSUPPORTED', /VMFS sparse/],
    ['sesparse', ['RW 8 SESPARSE "small.bin"'], 'custom', 'UNSUPPORTED', /seSparse/],
    ['rdm', ['RW 8 VMFSRDM "small.bin"'], 'custom', 'UNSUPPORTED', /raw device mapping/],
    ['noaccess', ['NOACCESS 8 FLAT "small.bin" 0'], 'custom', 'UNSUPPORTED', /NOACCESS/],
    ['ctype', ['RW 8 FLAT "small.bin" 0'], 'vmfsSparse', 'UNSUPPORTED', /'vmfsSparse'/],
    ['devices', ['RW 8 FLAT "small.bin" 0'], 'fullDevice', 'UNSUPPORTED', /'fullDevice'/],
  ];
  for (const [name, lines, type, code, message] of cases) {
    await rejects(descriptor(`${name}.vmdk`, lines, `createType="${type}"\n`), code, message);
  }
  const big = join(dir, 'big-desc.vmdk');
  writeFileSync(big, `# Disk DescriptorFile\n${'#'.repeat(2 * MiB)}\n`);
  await rejects(big, 'CORRUPT', /larger than 1 MiB/);
});

test('vmdk hostile: other sparse variants are refused by name', async () => {
  const cowd = join(dir, 'cowd.vmdk');
  writeFileSync(cowd, Buffer.concat([Buffer.from('COWD'), Buffer.alloc(2044)]));
  await rejects(cowd, 'UNSUPPORTED', /COWD/);
  const se = join(dir, 'se.vmdk');
  const seHead = Buffer.alloc(2048);
  seHead.writeBigUInt64LE(0xcafebaben, 0);
  writeFileSync(se, seHead);
  await rejects(se, 'UNSUPPORTED', /seSparse/);
});

test('vmdk hostile: delta links that do not fit', async () => {
  const base = join(dir, 'dl-base.vmdk');
  await qemuImg('convert', '-O', 'vmdk', src, base);
  const child = join(dir, 'dl-child.vmdk');
  await qemuImg('create', '-f', 'vmdk', '-b', base, '-F', 'vmdk', child);
  /** Rewrites the embedded descriptor of `child` (20 sectors at sector 1). */
  const withDesc = (name: string, edit: (text: string) => string) =>
    patched(child, name, (b) => {
      const region = b.subarray(512, 512 * 21);
      const text = region.toString('latin1').replace(/\0+$/, '');
      region.fill(0);
      region.write(edit(text), 'latin1');
    });
  const mismatch = withDesc('dl-cid.vmdk', (t) => t.replace(/parentCID=\w+/, 'parentCID=12345678'));
  await rejects(mismatch, 'CORRUPT', /CID/);
  const away = withDesc('dl-away.vmdk', (t) =>
    t.replace(/parentFileNameHint="[^"]*"/, 'parentFileNameHint="/etc/passwd"'),
  );
  await rejects(away, 'UNTRUSTED_REFERENCE', /\/etc\/passwd/);
  const nohint = withDesc('dl-nohint.vmdk', (t) => t.replace(/parentFileNameHint="[^"]*"\n/, ''));
  await rejects(nohint, 'UNSUPPORTED', /parentFileNameHint/);
  const loop = withDesc('dl-loop.vmdk', (t) => {
    const cid = /\nCID=(\w+)/.exec(t)![1]!;
    return t
      .replace(/parentCID=\w+/, `parentCID=${cid}`)
      .replace(/parentFileNameHint="[^"]*"/, 'parentFileNameHint="dl-loop.vmdk"');
  });
  await rejects(loop, 'CORRUPT', /loop/);
  await rejects(child, 'UNTRUSTED_REFERENCE', /untrusted/, { untrusted: true });
});

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { LocalFile } from '../../src/io/file.js';
import { openImage } from '../../src/open.js';
import { ovfDiskFiles } from '../../src/sources/ovf.js';
import { listTar } from '../../src/sources/tar.js';
import { readAll } from '../helpers/extents.js';
import { diskpipe, qemuImg, qemuIo, run, sparseFile, tempDir } from '../helpers/peers.js';
import { serveFiles } from './http-server.js';

const dir = tempDir();
const src = join(dir, 'src');
mkdirSync(src);

function makeDisk(name: string, size: number): Buffer {
  const path = sparseFile(join(src, name), size);
  const fd = openSync(path, 'r+');
  writeSync(fd, randomBytes(70_000), 0, 70_000, 0);
  writeSync(fd, randomBytes(1000), 0, 1000, size - 1000);
  closeSync(fd);
  return readFileSync(path);
}

const disk1 = makeDisk('disk1.raw', 1024 * 1024 + 513);
const disk2 = makeDisk('disk2.raw', 2 * 1024 * 1024);

/** An OVF whose Disk order (disk2 first) differs from the References and archive order. */
function ovf(files: [id: string, href: string][], disks: string[]): string {
  return `<?xml version="1.0" encoding="UTF-8"?>
<!-- <Disk ovf:fileRef="file1"/> in a comment is ignored -->
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References>
${files.map(([id, href]) => `    <File ovf:id="${id}" ovf:href="${href}" ovf:size="1"/>`).join('\n')}
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
${disks.map((ref, i) => `    <Disk ovf:capacity="1" ovf:diskId="vmdisk${i}" ovf:fileRef="${ref}" ovf:format="x"/>`).join('\n')}
  </DiskSection>
</Envelope>
`;
}

writeFileSync(
  join(src, 'vm.ovf'),
  ovf(
    [
      ['file1', 'disk1.raw'],
      ['file2', 'disk2.raw'],
    ],
    ['file2', 'file1'],
  ),
);

async function tar(name: string, format: string, members: string[], extra: string[] = []) {
  const out = join(dir, name);
  await run('tar', [`--format=${format}`, ...extra, '-C', src, '-cf', out, ...members]);
  return out;
}

async function contentOf(spec: string, opts = {}): Promise<Buffer> {
  const image = await openImage(spec, opts);
  try {
    return await readAll(image);
  } finally {
    await image.close();
  }
}

test('ova: the first disk in OVF order is opened, read in place', async () => {
  const ova = await tar('vm.ova', 'ustar', ['vm.ovf', 'disk1.raw', 'disk2.raw']);
  const image = await openImage(ova);
  try {
    assert.equal(image.format, 'raw');
    assert.equal(image.size, disk2.length);
    assert.ok((await readAll(image)).equals(disk2));
  } finally {
    await image.close();
  }
  assert.ok((await contentOf(ova, { member: 'disk1.raw' })).equals(disk1));
  assert.ok((await contentOf(ova, { member: './disk1.raw' })).equals(disk1));
});

test('tar: detected by its ustar magic whatever the name; --member on other files', async () => {
  const t = await tar('archive.bin', 'gnu', ['disk1.raw', 'disk2.raw']);
  // No OVF: the first member that looks like a disk.
  assert.ok((await contentOf(t)).equals(disk1));
  await assert.rejects(openImage(t, { member: 'nope.raw' }), {
    code: 'NOT_FOUND',
    message: /no member 'nope.raw' \(members: disk1.raw, disk2.raw\)/,
  });
  await assert.rejects(openImage(join(src, 'disk1.raw'), { member: 'x' }), { code: 'USAGE' });
  // -f raw: no unwrapping, the archive itself is the raw image.
  const whole = await openImage(t, { format: 'raw' });
  assert.equal(whole.size, statSync(t).size);
  await whole.close();
  // -f with an explicit --member still picks the member.
  assert.ok((await contentOf(t, { format: 'raw', member: 'disk2.raw' })).equals(disk2));
});

const LONG_DIR = `a-rather-long-directory-name-${'x'.repeat(60)}/and-another-level-${'y'.repeat(40)}`;
const LONG_NAME = `${LONG_DIR}/the-disk-image-with-a-long-name-${'z'.repeat(30)}.raw`;

for (const format of ['gnu', 'pax', 'ustar']) {
  test(`tar (${format}): long member names`, async () => {
    mkdirSync(join(src, LONG_DIR), { recursive: true });
    writeFileSync(join(src, LONG_NAME), disk2);
    assert.ok(LONG_NAME.length > 100);
    const t = await tar(`long-${format}.tar`, format, ['disk1.raw', LONG_NAME]);
    const file = await LocalFile.open(t);
    const names = (await listTar(file)).map((e) => e.name);
    await file.close();
    assert.ok(names.includes(LONG_NAME), names.join(', '));
    assert.ok((await contentOf(t, { member: LONG_NAME })).equals(disk2));
  });
}

test('tar: path-like member names are only names, never host paths', async () => {
  // A host file at the path the member name points to must not be what is read.
  writeFileSync(join(dir, 'decoy.raw'), Buffer.alloc(disk1.length, 0xee));
  const t = await tar(
    'paths.tar',
    'pax',
    ['disk1.raw', 'disk2.raw'],
    ['--transform=s,^disk1.raw$,../decoy.raw,', '--transform=s,^disk2.raw$,/etc/passwd,', '-P'],
  );
  const file = await LocalFile.open(t);
  const names = (await listTar(file)).map((e) => e.name);
  await file.close();
  // Leading slashes are dropped, as tar does; the names stay names.
  assert.deepEqual(names, ['../decoy.raw', 'etc/passwd']);
  assert.ok((await contentOf(t, { member: '../decoy.raw' })).equals(disk1));
  assert.ok((await contentOf(t, { member: '/etc/passwd' })).equals(disk2));
});

test('tar: sparse members are refused with a clear error', async () => {
  const sparse = sparseFile(join(src, 'sparse.raw'), 4 * 1024 * 1024);
  const fd = openSync(sparse, 'r+');
  writeSync(fd, Buffer.alloc(4096, 1), 0, 4096, 1024 * 1024);
  closeSync(fd);
  writeFileSync(join(src, 'dense.raw'), randomBytes(100_000));
  for (const format of ['gnu', 'pax']) {
    const t = await tar(`sparse-${format}.tar`, format, ['sparse.raw', 'dense.raw'], ['-S']);
    await assert.rejects(openImage(t, { member: 'sparse.raw' }), {
      code: 'UNSUPPORTED',
      message: /stored sparse/,
    });
    // The other members are still found behind it.
    const dense = readFileSync(join(src, 'dense.raw'));
    assert.ok((await contentOf(t, { member: 'dense.raw' })).equals(dense));
  }
});

test('tar: truncated or corrupt archives are CorruptImageErrors', async () => {
  const t = await tar('whole.tar', 'ustar', ['disk1.raw', 'disk2.raw']);
  const data = readFileSync(t);
  const cut = join(dir, 'cut.tar');
  writeFileSync(cut, data.subarray(0, 1024 * 1024));
  await assert.rejects(openImage(cut), { code: 'CORRUPT', message: /runs past the end/ });
  // Break the second header's checksum.
  const bad = Buffer.from(data);
  const second = 512 + Math.ceil(disk1.length / 512) * 512;
  bad[second + 10] = bad[second + 10]! ^ 0xff;
  const badPath = join(dir, 'bad.tar');
  writeFileSync(badPath, bad);
  await assert.rejects(openImage(badPath), { code: 'CORRUPT', message: /bad tar header checksum/ });
});

test('tar: no disk image inside is a clear error', async () => {
  writeFileSync(join(src, 'readme.txt'), 'hello');
  const t = await tar('nodisk.tar', 'ustar', ['readme.txt']);
  await assert.rejects(openImage(t), { code: 'NOT_FOUND', message: /no disk image found/ });
  // --member is suggested only by commands that take it; pull and disk create do not (they
  // were told 'pick one with --member' and then said "Unknown option '--member'").
  const info = diskpipe(['info', t]);
  assert.match(
    info.stderr,
    /no disk image found in the archive \(members: readme\.txt\); pick one with --member\n$/,
  );
  const cache = join(dir, 'nodisk-cache');
  for (const args of [
    ['pull', t],
    ['disk', 'create', '--from', t, join(dir, 'nodisk.raw')],
  ]) {
    const r = diskpipe(['--cache-dir', cache, ...args]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(
      r.stderr,
      /no disk image found in the archive \(members: readme\.txt\)\n$/,
      args[0],
    );
    assert.doesNotMatch(r.stderr, /--member/, args[0]);
  }
});

test('tar: an OVF naming a disk the archive lacks is an error', async () => {
  writeFileSync(join(src, 'lost.ovf'), ovf([['f', 'missing.vmdk']], ['f']));
  const t = await tar('lost.ova', 'ustar', ['lost.ovf', 'disk1.raw']);
  await assert.rejects(openImage(t), { code: 'CORRUPT', message: /'missing.vmdk'/ });
});

test('tar: a member larger than 8 GiB (GNU base-256 size) in a sparse archive', async () => {
  const size = 9 * 1024 ** 3 + 512;
  const header = Buffer.alloc(512);
  header.write('big.raw', 0);
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header[124] = 0x80; // base-256 size in the remaining 11 bytes
  header.writeUIntBE(size, 130, 6);
  header.write('00000000000\0', 136);
  header.write('0', 156);
  header.write('ustar  \0', 257);
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  const path = join(dir, 'big.tar');
  writeFileSync(path, header);
  truncateSync(path, 512 + size + 1024);
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.from('end of the big member'), 0, 21, 512 + size - 21);
  closeSync(fd);
  const image = await openImage(path);
  try {
    assert.equal(image.size, size);
    const tail = new Uint8Array(21);
    await image.read(tail, size - 21);
    assert.equal(Buffer.from(tail).toString(), 'end of the big member');
  } finally {
    await image.close();
  }
});

test('ova over HTTP: the member is read in place with range requests', async () => {
  const ova = await tar('net.ova', 'ustar', ['vm.ovf', 'disk1.raw', 'disk2.raw']);
  const server = await serveFiles({ '/vm.ova': ova });
  try {
    const image = await openImage(server.url('/vm.ova'), { http: { blockSize: 64 * 1024 } });
    try {
      assert.ok((await readAll(image)).equals(disk2));
    } finally {
      await image.close();
    }
    // disk1 (1 MiB) lies before disk2 and was never downloaded.
    const fetched = server.log.map((r) => /bytes=(\d+)-(\d+)/.exec(r.range ?? ''));
    const bytes = fetched.reduce((n, m) => n + (m ? Number(m[2]) - Number(m[1]) + 1 : 0), 0);
    assert.ok(bytes < statSync(ova).size - 512 * 1024, `${bytes} bytes fetched`);
  } finally {
    await server.close();
  }
});

test('ova inside gzip: staged once, then the OVF disk is opened', async () => {
  const ova = await tar('zipped.ova', 'ustar', ['vm.ovf', 'disk1.raw', 'disk2.raw']);
  await run('gzip', ['-k', '-f', ova]);
  assert.ok((await contentOf(`${ova}.gz`)).equals(disk2));
  assert.ok((await contentOf(`${ova}.gz`, { member: 'disk1.raw' })).equals(disk1));
});

test('a compressed disk inside an OVA is unwrapped (ovf:compression="gzip" style)', async () => {
  await run('gzip', ['-k', '-f', join(src, 'disk1.raw')]);
  writeFileSync(join(src, 'gz.ovf'), ovf([['f', 'disk1.raw.gz']], ['f']));
  const t = await tar('gz.ova', 'ustar', ['gz.ovf', 'disk1.raw.gz']);
  assert.ok((await contentOf(t)).equals(disk1));
});

for (const fmt of ['qcow2', 'vmdk'] as const) {
  test(`ova with a ${fmt} disk equals qemu-img convert`, async () => {
    const q = join(src, `q.${fmt}`);
    await qemuImg('create', '-f', 'qcow2', join(dir, 'q.qcow2'), '4M');
    await qemuIo(join(dir, 'q.qcow2'), ['write -P 0x61 64k 128k', 'write -P 0x62 3M 4k'], 'qcow2');
    const opts = fmt === 'vmdk' ? ['-o', 'subformat=streamOptimized'] : [];
    await qemuImg('convert', '-f', 'qcow2', '-O', fmt, ...opts, join(dir, 'q.qcow2'), q);
    const expected = join(dir, `q.${fmt}.raw`);
    await qemuImg('convert', '-O', 'raw', q, expected);
    writeFileSync(join(src, `${fmt}.ovf`), ovf([['f', `q.${fmt}`]], ['f']));
    const ova = await tar(`${fmt}.ova`, 'ustar', [`${fmt}.ovf`, `q.${fmt}`]);
    const image = await openImage(ova);
    try {
      assert.equal(image.format, fmt);
      assert.ok((await readAll(image)).equals(readFileSync(expected)));
    } finally {
      await image.close();
    }
  });
}

test('ovf: disk order, namespaces, entities; split files are refused', () => {
  const text = `<ns:Envelope><ns:References>
    <ns:File ns:href="b&amp;1.vmdk" ns:id="f1"/><ns:File ns:id='f2' ns:href='a.vmdk'/>
    <ns:File ns:id="iso" ns:href="tools.iso"/></ns:References>
    <ns:DiskSection><ns:Disk ns:fileRef="f2" ns:diskId="d1"/><ns:Disk ns:diskId="blank"/>
    <ns:Disk ns:diskId="d2" ns:fileRef="f1"></ns:Disk></ns:DiskSection></ns:Envelope>`;
  assert.deepEqual(ovfDiskFiles(text), ['a.vmdk', 'b&1.vmdk']);
  assert.deepEqual(ovfDiskFiles('<Envelope/>'), []);
  assert.throws(() => ovfDiskFiles('<File ovf:id="f" ovf:href="d.vmdk" ovf:chunkSize="1000"/>'), {
    code: 'UNSUPPORTED',
  });
});

/**
 * Shared checks for the vmdk/vhdx/vpc/vdi writers: sources made by qemu (raw with scattered
 * data and zero runs, qcow2 with data and zero clusters, an odd-sized raw), converted by
 * diskpipe and by qemu-img with the same options; the output must pass `qemu-img check`
 * (where the format has one), compare identical with the source, be as sparse as qemu-img's
 * (du, within a small margin), have qemu-img's virtual size, and be read back by diskpipe with
 * the same info and checksum.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { diskpipe, qemuImg, qemuIo, run, sparseFile, tempDir } from '../helpers/peers.js';

const MiB = 1024 * 1024;

export interface Source {
  name: string;
  path: string;
  format: 'raw' | 'qcow2';
}

/** Three sources made by qemu in a fresh directory. */
export async function makeSources(): Promise<{ dir: string; sources: Source[] }> {
  const dir = tempDir('diskpipe-writer-');
  const raw = sparseFile(join(dir, 'scattered.raw'), 40 * MiB);
  await qemuIo(
    raw,
    [
      'write -P 0x11 0 4k', // first sector of the first block
      'write -P 0x22 1000k 200k', // unaligned, across a 1 MiB block edge
      'write -P 0 3M 1M', // allocated zeroes: must stay holes
      'write -P 0x33 8388100 1000', // across the 8 MiB vhdx block edge
      'write -P 0x44 20M 3M',
      'write -P 0x55 41942528 512', // the last sector
    ],
    'raw',
  );
  const qcow2 = join(dir, 'source.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', qcow2, '33M');
  await qemuIo(qcow2, [
    'write -P 0x66 64k 128k',
    'write -z 2M 2M',
    'write -P 0x77 17M 5M',
    'write -c -P 0x78 30M 64k',
  ]);
  const odd = sparseFile(join(dir, 'odd.raw'), 5 * MiB + 1234);
  await qemuIo(odd, ['write -P 0x99 0 3k', `write -P 0xaa ${5 * MiB} 1234`], 'raw');
  return {
    dir,
    sources: [
      { name: 'scattered raw', path: raw, format: 'raw' },
      { name: 'qcow2', path: qcow2, format: 'qcow2' },
      { name: 'odd-sized raw', path: odd, format: 'raw' },
    ],
  };
}

/** Allocated bytes of a file, as `du --block-size=1` reports them. */
export async function du(path: string): Promise<number> {
  return Number((await run('du', ['--block-size=1', path])).split(/\s/)[0]);
}

/** Runs diskpipe and fails with its stderr unless it exits 0. */
export function ok(args: string[]): string {
  const r = diskpipe(args);
  assert.equal(r.status, 0, `diskpipe ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

export function checksumOf(path: string, format?: string): string {
  const args = format ? ['checksum', '-f', format, path] : ['checksum', path];
  return ok(args).split(/\s/)[0]!;
}

export interface OutputCase {
  /** qemu-img's format name (-O). */
  format: 'vmdk' | 'vhdx' | 'vpc' | 'vdi';
  /** -o options, the same for diskpipe and qemu-img. */
  options?: string;
  /** qemu has no check for vpc. */
  check: boolean;
  /** A fixed VHD is not probed as such by qemu: name the format when reading it. */
  readAs?: string;
}

function qemuInfo(path: string, format?: string): Promise<Record<string, unknown>> {
  const args = ['info', '--output=json', ...(format ? ['-f', format] : []), path];
  return qemuImg(...args).then((s) => JSON.parse(s) as Record<string, unknown>);
}

/** Converts `src` with diskpipe and with qemu-img, then checks everything the module says. */
export async function checkConversion(dir: string, src: Source, c: OutputCase): Promise<void> {
  const tag = `${src.name.replace(/\W+/g, '-')}-${c.format}-${(c.options ?? 'default').replace(/\W+/g, '-')}`;
  const ours = join(dir, `${tag}.${c.format}`);
  const theirs = join(dir, `${tag}.qemu.${c.format}`);
  const opts = c.options ? ['-o', c.options] : [];
  ok(['convert', '-O', c.format, ...opts, src.path, ours]);
  await qemuImg('convert', '-f', src.format, '-O', c.format, ...opts, src.path, theirs);

  if (c.check) await qemuImg('check', '-q', '-f', c.format, ours);
  const fmt = c.readAs ?? c.format;
  assert.match(
    await qemuImg('compare', '-f', src.format, '-F', fmt, src.path, ours),
    /Images are identical/,
    `${tag}: qemu-img compare`,
  );

  // The same virtual size as qemu-img's output of the same source.
  const qemuSize = (await qemuInfo(theirs, c.readAs))['virtual-size'];
  assert.equal((await qemuInfo(ours, fmt))['virtual-size'], qemuSize, `${tag}: qemu's view`);
  const info = JSON.parse(ok(['info', '--json', ...(c.readAs ? ['-f', c.readAs] : []), ours]));
  assert.equal(info.format, c.format, `${tag}: probed format`);
  assert.equal(info['virtual-size'], qemuSize, `${tag}: diskpipe's view of the size`);

  // As sparse as qemu-img's output (a little slack for metadata placement).
  const mine = await du(ours);
  const ref = await du(theirs);
  assert.ok(mine <= ref + 128 * 1024, `${tag}: ${mine} bytes allocated, qemu-img ${ref}`);

  // Read back by diskpipe: the same content digest as qemu's output (same size and bytes),
  // and as the source where the sizes agree.
  const sum = checksumOf(ours, c.readAs);
  assert.equal(sum, checksumOf(theirs, c.readAs), `${tag}: checksum vs qemu-img's output`);
  const srcInfo = JSON.parse(ok(['info', '--json', src.path]));
  if (srcInfo['virtual-size'] === qemuSize) {
    assert.equal(sum, checksumOf(src.path), `${tag}: checksum vs the source`);
  }
}

/** `create -f FMT [-o ...] PATH SIZE` against `qemu-img create` of the same request. */
export async function checkCreate(dir: string, c: OutputCase, size: string): Promise<void> {
  const tag = `empty-${size}-${c.format}-${(c.options ?? 'default').replace(/\W+/g, '-')}`;
  const ours = join(dir, `${tag}.${c.format}`);
  const theirs = join(dir, `${tag}.qemu.${c.format}`);
  const opts = c.options ? ['-o', c.options] : [];
  ok(['create', '-f', c.format, ...opts, ours, size]);
  await qemuImg('create', '-q', '-f', c.format, ...opts, theirs, size);
  if (c.check) await qemuImg('check', '-q', '-f', c.format, ours);
  const fmt = c.readAs ?? c.format;
  const qemuSize = (await qemuInfo(theirs, c.readAs))['virtual-size'];
  assert.equal((await qemuInfo(ours, fmt))['virtual-size'], qemuSize, `${tag}: size`);
  assert.match(await qemuImg('compare', '-f', fmt, '-F', fmt, theirs, ours), /identical/);
  const info = JSON.parse(ok(['info', '--json', ...(c.readAs ? ['-f', c.readAs] : []), ours]));
  assert.equal(info.format, c.format);
  assert.equal(info['virtual-size'], qemuSize);
  assert.ok((await du(ours)) <= (await du(theirs)) + 128 * 1024, `${tag}: allocation`);
  // Read back by diskpipe: the same content digest as qemu-img's empty image.
  assert.equal(checksumOf(ours, c.readAs), checksumOf(theirs, c.readAs), `${tag}: checksum`);
}

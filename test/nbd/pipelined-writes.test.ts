/**
 * Pipelined writes of every size class (512 B to 32 MiB, aligned and odd offsets) into
 * `diskpipe serve --overlay` and `--writable`, from qemu-io, nbdcopy, `diskpipe convert -n` and
 * the library's NBD client; every result is checked by content with `qemu-img compare` against
 * the same writes applied to a local file. The overlay once kept views of the server's reused
 * receive buffers, so later requests overwrote data it had stored.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openImage } from '../../src/open.js';
import { diskpipeAsync, qemuImg, qemuIo, run, sparseFile, tempDir } from '../helpers/peers.js';
import { type Served, startServe } from './helpers.js';

const dir = tempDir();
const SIZE = 96 * 1024 * 1024;
const MiB = 1024 * 1024;
const SIZES = [512, 4096, 64 * 1024, MiB, 2 * MiB, 32 * MiB];
type Mode = '--overlay' | '--writable';

/** A base image with data every 8 MiB, so partial-block writes must merge with it. */
const base = sparseFile(join(dir, 'base.raw'), SIZE);
{
  const fd = openSync(base, 'r+');
  for (let at = 3 * MiB; at < SIZE; at += 8 * MiB) writeSync(fd, randomBytes(MiB), 0, MiB, at);
  closeSync(fd);
}
const baseBytes = readFileSync(base);

/** One write per size class at an aligned offset and one at an odd offset, none overlapping. */
function layout(): { offset: number; length: number }[] {
  const writes: { offset: number; length: number }[] = [];
  let cursor = 0;
  for (const length of SIZES) {
    const align = Math.min(length, MiB);
    const aligned = Math.ceil(cursor / align) * align;
    writes.push({ offset: aligned, length });
    const odd = aligned + length + 4096 + 777;
    writes.push({ offset: odd, length });
    cursor = odd + length + 4096;
  }
  assert.ok(cursor <= SIZE);
  return writes;
}

/** Starts `diskpipe serve MODE` on a fresh copy of the base; returns the URI and the copy. */
async function serve(mode: Mode, name: string): Promise<{ served: Served; image: string }> {
  const image = join(dir, `${name}.raw`);
  copyFileSync(base, image);
  const socket = join(dir, `${name}.sock`);
  const served = await startServe([mode, '--socket', socket, image]);
  return { served, image };
}

/** Asserts the export holds exactly `expected` (qemu-img compare reads it over NBD). */
async function assertHolds(uri: string, expected: Buffer, name: string): Promise<void> {
  const path = join(dir, `${name}.expected`);
  writeFileSync(path, expected);
  await qemuImg('compare', '-f', 'raw', '-F', 'raw', path, uri);
}

/** After serving: --writable wrote the file, --overlay left it untouched. */
function assertFile(mode: Mode, image: string, expected: Buffer): void {
  const now = readFileSync(image);
  assert.ok(now.equals(mode === '--writable' ? expected : baseBytes), `${mode}: ${image}`);
}

for (const mode of ['--overlay', '--writable'] as const) {
  test(`${mode}: qemu-io aio writes of every size class, in flight together`, async () => {
    const { served, image } = await serve(mode, `qemu-io${mode}`);
    try {
      const expected = Buffer.from(baseBytes);
      const commands: string[] = [];
      layout().forEach(({ offset, length }, i) => {
        const pattern = 0x11 + i * 0x0d;
        commands.push(`aio_write -P ${pattern} ${offset} ${length}`);
        expected.fill(pattern, offset, offset + length);
      });
      commands.push('aio_flush');
      await qemuIo(served.uri, commands, 'raw');
      await assertHolds(served.uri, expected, `qemu-io${mode}`);
      await served.stop();
      assertFile(mode, image, expected);
    } finally {
      await served.stop();
    }
  });

  test(`${mode}: nbdcopy with request sizes from 4 KiB (its minimum) to 32 MiB`, async () => {
    // A fresh export per size: the first write to an overlay block is the one that was kept
    // by reference, so an earlier round must not have stored the blocks already.
    for (const size of SIZES.filter((s) => s >= 4096)) {
      const { served, image } = await serve(mode, `nbdcopy-${size}${mode}`);
      try {
        const source = join(dir, `src-${size}${mode}`);
        const data = randomBytes(34 * MiB + 12345);
        writeFileSync(source, data);
        const args = [`--request-size=${size}`, '--requests=64', `--queue-size=${512 * MiB}`];
        await run('nbdcopy', [...args, source, served.uri]);
        const expected = Buffer.from(baseBytes);
        data.copy(expected, 0);
        await assertHolds(served.uri, expected, `nbdcopy-${size}${mode}`);
        await served.stop();
        assertFile(mode, image, expected);
      } finally {
        await served.stop();
      }
    }
  });

  test(`${mode}: diskpipe's NBD client as a destination (convert -n, pipelined library writes)`, async () => {
    const { served, image } = await serve(mode, `client${mode}`);
    try {
      const expected = Buffer.from(baseBytes);
      for (const requestSize of ['64K', '8M']) {
        const source = join(dir, `convert-${requestSize}${mode}`);
        const data = randomBytes(40 * MiB + 4097);
        writeFileSync(source, data);
        const convert = diskpipeAsync([
          'convert',
          '-n',
          '-f',
          'raw',
          '-m',
          '64',
          '--request-size',
          requestSize,
          source,
          served.uri,
        ]);
        const r = await convert.done;
        assert.equal(r.status, 0, r.stderr);
        // The source is shorter than the export: the rest keeps its bytes.
        data.copy(expected, 0);
        await assertHolds(served.uri, expected, `convert-${requestSize}${mode}`);
      }

      const remote = await openImage(served.uri, { writable: true, format: 'raw' });
      try {
        const writes = layout().map(({ offset, length }) => {
          const data = randomBytes(length);
          data.copy(expected, offset);
          return remote.write!(data, offset);
        });
        await Promise.all(writes);
        await remote.flush?.();
      } finally {
        await remote.close();
      }
      await assertHolds(served.uri, expected, `library${mode}`);
      await served.stop();
      assertFile(mode, image, expected);
    } finally {
      await served.stop();
    }
  });
}

/**
 * The error tree: one class per code, and context added on the way up keeps the class, the
 * code, the class's own fields and the original error as `cause`.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  AbortError,
  CacheError,
  ChecksumMismatchError,
  CorruptImageError,
  DiskpipeError,
  type ErrorCode,
  HttpError,
  IoError,
  ioError,
  NbdProtocolError,
  NotCapableError,
  NotFoundError,
  OutOfRangeError,
  UnsupportedFeatureError,
  UntrustedReferenceError,
  UsageError,
  WrongFormatError,
  withContext,
} from '../src/errors.js';
import * as api from '../src/index.js';
import { openImage } from '../src/open.js';
import { compareImages } from '../src/ops/compare.js';
import { convertImage } from '../src/ops/convert.js';
import { qemuImg, qemuIo, tempDir } from './helpers/peers.js';
import { be64, patch } from './helpers/qemu-compare.js';

const dir = tempDir();

const table: [DiskpipeError, string, ErrorCode][] = [
  [new UsageError('m'), 'UsageError', 'USAGE'],
  [new IoError('m'), 'IoError', 'IO'],
  [new NotFoundError('m'), 'NotFoundError', 'NOT_FOUND'],
  [new WrongFormatError('m'), 'WrongFormatError', 'WRONG_FORMAT'],
  [new UnsupportedFeatureError('m'), 'UnsupportedFeatureError', 'UNSUPPORTED'],
  [new CorruptImageError('m'), 'CorruptImageError', 'CORRUPT'],
  [new OutOfRangeError('m'), 'OutOfRangeError', 'OUT_OF_RANGE'],
  [new NotCapableError('m'), 'NotCapableError', 'NOT_CAPABLE'],
  [new UntrustedReferenceError('m'), 'UntrustedReferenceError', 'UNTRUSTED_REFERENCE'],
  [new ChecksumMismatchError('m', 'aa', 'bb'), 'ChecksumMismatchError', 'CHECKSUM_MISMATCH'],
  [new NbdProtocolError('m'), 'NbdProtocolError', 'NBD_PROTOCOL'],
  [new HttpError('m', true, 503), 'HttpError', 'HTTP'],
  [new CacheError('m'), 'CacheError', 'CACHE'],
  [new AbortError('m'), 'AbortError', 'ABORTED'],
];

test('errors: one class per code, each a DiskpipeError with its name', () => {
  const codes = new Set<string>();
  for (const [err, name, code] of table) {
    assert.ok(err instanceof DiskpipeError);
    assert.equal(err.name, name);
    assert.equal(err.code, code);
    codes.add(code);
  }
  assert.equal(codes.size, table.length, 'no two classes share a code');
  // The public API exports every class, HttpError and AbortError included.
  for (const [, name] of table)
    assert.equal(typeof (api as Record<string, unknown>)[name], 'function');
});

test('errors: each code has its own class (one factory makes them): named, distinct, extensible', () => {
  for (const [err, name] of table) {
    const cls = err.constructor as new (message: string) => DiskpipeError;
    assert.equal(cls.name, name);
    assert.equal(String(err), `${name}: m`);
    assert.ok(Object.getPrototypeOf(cls.prototype) === DiskpipeError.prototype, name);
    for (const [other, otherName] of table)
      if (other !== err)
        assert.ok(!(err instanceof other.constructor), `${name} is not ${otherName}`);
  }
  class LockedError extends CacheError {}
  const locked = new LockedError('in use', { cause: 'x' });
  assert.ok(locked instanceof CacheError && locked instanceof DiskpipeError);
  assert.deepEqual([locked.name, locked.code, locked.cause], ['LockedError', 'CACHE', 'x']);
});

test('withContext keeps the class, the code, the fields and the cause', () => {
  for (const [err] of table) {
    const wrapped = withContext(err, 'while converting x.qcow2');
    assert.equal(Object.getPrototypeOf(wrapped), Object.getPrototypeOf(err));
    assert.ok(wrapped instanceof DiskpipeError);
    assert.equal(wrapped.code, err.code);
    assert.equal(wrapped.name, err.name);
    assert.equal(wrapped.message, 'while converting x.qcow2: m');
    assert.equal(wrapped.cause, err);
    assert.match(String(wrapped.stack), /^\w+: while converting x\.qcow2: m\n/);
  }
  const mismatch = withContext(new ChecksumMismatchError('m', 'aa', 'bb'), 'pull');
  assert.ok(mismatch instanceof ChecksumMismatchError);
  assert.deepEqual([mismatch.expected, mismatch.actual], ['aa', 'bb']);
  const http = withContext(new HttpError('m', true, 503), 'range read');
  assert.ok(http instanceof HttpError);
  assert.deepEqual([http.transient, http.status], [true, 503]);
  // A system error becomes an IoError (NotFoundError for ENOENT), the original as cause.
  const enoent = Object.assign(new Error('x'), { code: 'ENOENT' });
  const notFound = withContext(enoent, 'cannot open a.raw');
  assert.ok(notFound instanceof NotFoundError);
  assert.equal(notFound.cause, enoent);
  assert.ok(ioError(Object.assign(new Error('x'), { code: 'EIO' }), 'read') instanceof IoError);
});

/** A real qcow2 whose second cluster's L2 entry points 1 TiB past the end of the file. */
async function corruptQcow2(): Promise<string> {
  const path = join(dir, 'corrupt.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', path, '4M');
  await qemuIo(path, ['write -P 0x5a 0 128k', 'write -P 0x5b 1M 64k']);
  const b = readFileSync(path);
  const l1 = Number(b.readBigUInt64BE(40));
  const l2 = Number(b.readBigUInt64BE(l1) & 0x00fffffffffffe00n);
  await patch(path, l2 + 8, be64((1n << 63n) | (1n << 40n)));
  return path;
}

test('a corrupt qcow2 through convert and compare is still a CorruptImageError', async () => {
  const path = await corruptQcow2();
  const clean = join(dir, 'clean.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', clean, '4M');
  const check = (what: string) => (err: unknown) => {
    assert.ok(err instanceof CorruptImageError, `${what}: ${String(err)}`);
    assert.equal(err.code, 'CORRUPT');
    assert.match(err.message, /past the end/);
    return true;
  };
  const image = await openImage(path);
  const other = await openImage(clean);
  try {
    for (const format of ['raw', 'qcow2'] as const) {
      await assert.rejects(
        convertImage(image, join(dir, `out.${format}`), { format }),
        check(`convert -O ${format}`),
      );
    }
    await assert.rejects(compareImages(image, other), check('compare'));
    await assert.rejects(compareImages(other, image), check('compare (b side)'));
  } finally {
    await image.close();
    await other.close();
  }
});

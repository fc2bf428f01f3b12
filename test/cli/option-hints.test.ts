/**
 * Advice naming an option is given only by commands that take the option: disk create was
 * told to raise its limit "with --max-download", which it does not take.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { disk } from '../../src/cli/commands/disk.js';
import { pull } from '../../src/cli/commands/pull.js';
import { withOptionAdvice } from '../../src/cli/option-hint.js';
import { DiskpipeError, HttpError } from '../../src/errors.js';
import { tooLarge } from '../../src/sources/download-limits.js';

const place = { label: 'http://h/x.img', partPath: '/c/tmp/x.part', start: 0, total: undefined };
const message = (err: unknown) => (err as Error).message;

test('the default download limit: pull says --max-download, disk create does not', () => {
  const err = tooLarge(place, 64 * 2 ** 30, {});
  assert.ok(err instanceof HttpError);
  const create = disk.subcommands?.find((c) => c.name === 'create');
  assert.ok(create);
  assert.equal(
    message(withOptionAdvice(err, pull.options)),
    'http://h/x.img: download stopped at the limit of 68719476736 bytes (raise it with --max-download)',
  );
  const fromCreate = withOptionAdvice(err, create.options);
  assert.equal(
    message(fromCreate),
    'http://h/x.img: download stopped at the limit of 68719476736 bytes',
  );
  assert.ok(fromCreate instanceof HttpError && fromCreate instanceof DiskpipeError);
  // A limit the user gave is not the default: nothing to raise it with.
  assert.equal(
    message(withOptionAdvice(tooLarge(place, 4096, { maxDownload: 4096 }), pull.options)),
    'http://h/x.img: download stopped at the limit of 4096 bytes',
  );
});

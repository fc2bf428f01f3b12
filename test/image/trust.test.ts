import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { environmentDefaults } from '../../src/cli/env.js';
import { TrustPolicy } from '../../src/image/trust.js';
import { tempDir } from '../helpers/peers.js';

const root = tempDir();
const images = join(root, 'images');
const other = join(root, 'other');
mkdirSync(join(images, 'sub'), { recursive: true });
mkdirSync(other);
const top = join(images, 'top.qcow2');
for (const f of [
  top,
  join(images, 'base.img'),
  join(images, 'sub', 'deep.img'),
  join(other, 'x.img'),
])
  writeFileSync(f, '');
symlinkSync(join(other, 'x.img'), join(images, 'escape.img'));

test('trust: references inside the image directory tree resolve to real paths', () => {
  const policy = TrustPolicy.forImage({}, top);
  assert.equal(policy.resolve('base.img', top, 'backing file'), join(images, 'base.img'));
  assert.equal(
    policy.resolve('sub/deep.img', top, 'backing file'),
    join(images, 'sub', 'deep.img'),
  );
  assert.equal(
    policy.resolve(join(images, 'base.img'), top, 'data file'),
    join(images, 'base.img'),
  );
});

test('trust: paths leaving the tree are refused with the flag that allows them', () => {
  const policy = TrustPolicy.forImage({}, top);
  for (const ref of ['../other/x.img', join(other, 'x.img'), 'escape.img']) {
    assert.throws(
      () => policy.resolve(ref, top, 'backing file'),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'UNTRUSTED_REFERENCE');
        assert.match(err.message, /--allow-backing/);
        return true;
      },
    );
  }
  assert.throws(() => policy.resolve('/etc/passwd', top, 'extent file'), {
    code: 'UNTRUSTED_REFERENCE',
  });
});

test('trust: allowBacking opens a directory; DISKPIPE_ALLOW_BACKING is the CLI default of it', () => {
  assert.equal(
    TrustPolicy.forImage({ allowBacking: [other] }, top).resolve(
      '../other/x.img',
      top,
      'backing file',
    ),
    join(other, 'x.img'),
  );
  process.env.DISKPIPE_ALLOW_BACKING = other;
  try {
    // The library reads no environment: only the CLI turns the variable into the option.
    assert.throws(() => TrustPolicy.forImage({}, top).resolve('escape.img', top, 'backing file'), {
      code: 'UNTRUSTED_REFERENCE',
    });
    const opts = environmentDefaults(undefined);
    assert.deepEqual(opts.allowBacking, [other]);
    assert.equal(
      TrustPolicy.forImage(opts, top).resolve('escape.img', top, 'backing file'),
      join(other, 'x.img'),
    );
  } finally {
    delete process.env.DISKPIPE_ALLOW_BACKING;
  }
});

test('trust: untrusted images may not reference anything; devices and protocols are refused', () => {
  assert.throws(
    () => TrustPolicy.forImage({ untrusted: true }, top).resolve('base.img', top, 'backing file'),
    {
      code: 'UNTRUSTED_REFERENCE',
      message: /--untrusted/,
    },
  );
  assert.throws(
    () => TrustPolicy.forImage({}, top, true).resolve('base.img', top, 'backing file'),
    { code: 'UNTRUSTED_REFERENCE' },
  );
  assert.throws(
    () =>
      TrustPolicy.forImage({ allowBacking: ['/dev'] }, top).resolve(
        '/dev/null',
        top,
        'backing file',
      ),
    {
      message: /not a regular file/,
    },
  );
  assert.throws(
    () => TrustPolicy.forImage({}, top).resolve('nbd://10.0.0.1/x', top, 'backing file'),
    { message: /protocol/ },
  );
  assert.throws(() => TrustPolicy.forImage({}, top).resolve('missing.img', top, 'backing file'), {
    code: 'NOT_FOUND',
  });
});

test('trust: a refused reference is decided from its text; missing and existing paths look alike', () => {
  const policy = TrustPolicy.forImage({}, top);
  const missing = join(root, 'no-such-dir', 'x.img');
  const messages = [missing, join(other, 'x.img'), '../no-such-dir/x.img'].map((ref) => {
    try {
      policy.resolve(ref, top, 'backing file');
    } catch (err) {
      const e = err as Error & { code?: string };
      assert.equal(e.code, 'UNTRUSTED_REFERENCE', `${ref}: ${e.message}`);
      assert.ok(e.message.includes(`'${ref}'`), e.message);
      assert.doesNotMatch(e.message, /ENOENT|cannot be opened/);
      return e.message.replace(`'${ref}'`, 'REF').replace(/--allow-backing \S+$/, '');
    }
    return assert.fail(`${ref} was allowed`);
  });
  assert.equal(new Set(messages).size, 1, messages.join('\n'));
});

test('trust: /proc/self/fd/0 is refused as written, never resolved in the message', () => {
  const policy = TrustPolicy.forImage({}, top);
  assert.throws(
    () => policy.resolve('/proc/self/fd/0', top, 'backing file'),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'UNTRUSTED_REFERENCE');
      assert.match(err.message, /'\/proc\/self\/fd\/0'/);
      assert.doesNotMatch(err.message, /\/dev\/|pipe:|socket:|\(\//);
      return true;
    },
  );
});

test('trust: a symlink out of the tree names the reference, not where it points', () => {
  assert.throws(
    () => TrustPolicy.forImage({}, top).resolve('escape.img', top, 'backing file'),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'UNTRUSTED_REFERENCE');
      assert.match(err.message, /'escape\.img'.*symbolic link/);
      assert.ok(!err.message.includes(other), err.message);
      return true;
    },
  );
});

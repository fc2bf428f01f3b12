/**
 * A compressed input that cannot be read (missing, a directory, no permission, an I/O error in
 * the middle) is a clean DiskpipeError on every decoder (system library, tool, JS/WASM) and
 * through the library API and the CLI: never corrupt data, never an unhandled 'error' event.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, createReadStream, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { DiskpipeError, openImage, openStream } from '../../src/index.js';
import { setNativeEnabled } from '../../src/io/native.js';
import { decompress } from '../../src/sources/decompress/index.js';
import { diskpipe, tempDir } from '../helpers/peers.js';
import { withNbdPeer } from '../nbd/helpers.js';

const dir = tempDir();
chmodSync(dir, 0o755); // the EACCES case runs the CLI as nobody
const MiB = 1024 * 1024;
const KINDS = { xz: ['xz', '-0'], gzip: ['gzip'], zstd: ['zstd', '-q'], bzip2: ['bzip2'] } as const;
type Kind = keyof typeof KINDS;

/** 1.5 MiB of random bytes, compressed: the compressed file is larger than 1 MiB too. */
const raw = randomBytes(1.5 * MiB);
const files = new Map<Kind, string>();
for (const [kind, [cmd, ...args]] of Object.entries(KINDS) as [Kind, readonly string[]][]) {
  const r = spawnSync(cmd!, ['-c', ...args], { input: raw, maxBuffer: 1 << 26 });
  assert.equal(r.status, 0, `${cmd}: ${r.stderr}`);
  const path = join(dir, `disk.raw.${kind}`);
  writeFileSync(path, r.stdout);
  files.set(kind, path);
}
const missing = join(dir, 'missing.raw.xz');
const directory = join(dir, 'a-directory.xz');
mkdirSync(directory);

/** Every decoder: [native calls on, accelerators on] (zstd: libzstd, tool, libzstd, npm/JS). */
const DECODERS = [
  ['lib', true, true],
  ['tool', false, true],
  ['js', true, false],
  ['js, no native', false, false],
] as const;
const ENV: Record<(typeof DECODERS)[number][0], NodeJS.ProcessEnv> = {
  lib: {},
  tool: { DISKPIPE_NO_NATIVE: '1' },
  js: { DISKPIPE_NO_ACCEL: '1' },
  'js, no native': { DISKPIPE_NO_NATIVE: '1', DISKPIPE_NO_ACCEL: '1' },
};

async function drainStream(spec: string, accelerate: boolean): Promise<void> {
  const r = await openStream(spec, { accelerate });
  assert.equal(r.kind, 'stream');
  if (r.kind !== 'stream') return;
  try {
    for await (const _ of r.stream.chunks()) {
    }
  } finally {
    await r.stream.close();
  }
}

/** An NBD export of `file` whose reads fail with EIO from 1 MiB on (nbdkit's eval plugin). */
function failingExport(file: string): string[] {
  return [
    'eval',
    `get_size=stat -c %s '${file}'`,
    `pread=if [ "$4" -ge ${MiB} ]; then echo "EIO injected" >&2; exit 1; fi; dd if='${file}' skip="$4" count="$3" iflag=skip_bytes,count_bytes status=none`,
  ];
}

for (const [how, native, accelerate] of DECODERS) {
  test(`${how}: a Node stream of a missing file or a directory fails cleanly in decompress()`, async () => {
    setNativeEnabled(native);
    try {
      for (const kind of Object.keys(KINDS) as Kind[]) {
        for (const [path, code, message] of [
          [missing, 'NOT_FOUND', /^cannot open in\.x: ENOENT/],
          [directory, 'IO', /^read error on in\.x: EISDIR/],
        ] as const) {
          // The WASM xz decoder pulls its first input only after loading its module; the
          // stream's open error came before that, with no listener (an uncaught exception).
          const all = async () => {
            for await (const _ of decompress(kind, createReadStream(path), 'in.x', {
              accelerate,
            })) {
            }
          };
          await assert.rejects(all(), (e: Error & { code?: string }) => {
            assert.ok(e instanceof DiskpipeError, `${kind}: ${e.stack}`);
            assert.equal(e.code, code, `${kind}: ${e.message}`);
            assert.match(e.message, message);
            return true;
          });
        }
      }
    } finally {
      setNativeEnabled(true);
    }
  });

  test(`${how}: library API: missing file, directory and an I/O error mid-stream are DiskpipeErrors`, async () => {
    setNativeEnabled(native);
    try {
      await assert.rejects(drainStream(missing, accelerate), { code: 'NOT_FOUND' });
      await assert.rejects(openImage(directory, { accelerate }), { code: 'IO' });
      for (const [kind, file] of files) {
        await withNbdPeer('nbdkit', failingExport(file), async (uri) => {
          await assert.rejects(drainStream(uri(), accelerate), (e: Error) => {
            assert.ok(e instanceof DiskpipeError, `${kind}: ${e.stack}`);
            assert.match(e.message, /read of \d+ bytes at \d+ failed: EIO/, kind);
            return true;
          });
        });
      }
    } finally {
      setNativeEnabled(true);
    }
  });

  test(`${how}: CLI: unreadable inputs exit 2 with one line naming the reason`, async () => {
    const env = ENV[how];
    const oneLine = (r: ReturnType<typeof diskpipe>, reason: RegExp, what: string) => {
      assert.equal(r.status, 2, `${what}: ${r.stderr}`);
      assert.match(r.stderr, reason, what);
      assert.equal(r.stderr.trim().split('\n').length, 1, `${what}: ${r.stderr}`);
    };
    oneLine(diskpipe(['checksum', missing], { env }), /^diskpipe: cannot open .*ENOENT/, 'missing');
    oneLine(diskpipe(['convert', directory, join(dir, 'out')], { env }), /EISDIR/, 'directory');
    const secret = join(dir, 'secret.raw.xz');
    writeFileSync(secret, '');
    chmodSync(secret, 0o600);
    const main = new URL('../../src/cli/main.js', import.meta.url).pathname;
    const asNobody = spawnSync(
      'setpriv',
      ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, main, 'info', secret],
      { env: { ...process.env, ...env }, encoding: 'utf8' },
    );
    oneLine(
      { status: asNobody.status, stdout: asNobody.stdout, stderr: asNobody.stderr },
      /^diskpipe: cannot open .*EACCES/,
      'no permission',
    );
    for (const [kind, file] of files) {
      await withNbdPeer('nbdkit', failingExport(file), async (uri) => {
        oneLine(
          diskpipe(['checksum', uri()], { env }),
          /^diskpipe: .* failed: EIO/,
          `${kind} mid-stream`,
        );
      });
    }
  });
}

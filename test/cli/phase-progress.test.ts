import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { PhaseProgress } from '../../src/cli/phase-progress.js';
import { diskpipe, tempDir } from '../helpers/peers.js';

function fakeStream(isTTY: boolean, columns = 160) {
  const written: string[] = [];
  const stream = { isTTY, columns, write: (s: string) => written.push(s) > 0 };
  return { stream: stream as unknown as NodeJS.WriteStream, written };
}

const MiB = 1024 * 1024;

test('phase progress: overlapping phases share a line; each ended phase keeps its own line', () => {
  const { stream, written } = fakeStream(true);
  let t = 0;
  const p = new PhaseProgress({ stream, intervalMs: 0, now: () => t });
  for (let i = 1; i <= 8; i++) {
    t += 1000;
    p.update('downloading', i * MiB, 8 * MiB);
    if (i >= 2 && i < 8) p.update('converting', i * 4 * MiB, 64 * MiB);
  }
  const shared = written.filter((w) => w.includes('downloading') && w.includes('converting'));
  assert.ok(shared.length > 0, 'the overlapped phases were never shown together');
  const ended = written.filter((w) => w.endsWith('\n'));
  assert.equal(ended.length, 1);
  assert.match(ended[0]!, /downloading +100% +8 MiB \/ 8 MiB +1 MiB\/s {2}ETA +0:00\n$/);
  t += 1000;
  p.update('converting', 64 * MiB, 64 * MiB);
  assert.match(written.at(-1)!, /^\r\x1b\[Kconverting +100%/);
  assert.equal(written.filter((w) => w.endsWith('\n')).length, 2);
  p.finish();
});

test('phase progress: unknown totals show bytes and rate only; nothing off a terminal', () => {
  const { stream, written } = fakeStream(true);
  let t = 0;
  const p = new PhaseProgress({ stream, intervalMs: 0, now: () => t });
  t = 1000;
  p.update('converting', 3 * MiB, undefined);
  t = 2000;
  p.update('converting', 5 * MiB, undefined);
  assert.match(written.at(-1)!, /converting +5 MiB +2 MiB\/s$/);
  assert.doesNotMatch(written.at(-1)!, /%|ETA/);
  const off = fakeStream(false);
  const q = new PhaseProgress({ stream: off.stream });
  q.update('downloading', 1, 2);
  q.finish();
  assert.deepEqual(off.written, []);
});

test('disk create -p and pull -p run quietly when stderr is not a terminal', () => {
  const dir = tempDir('diskpipe-progress-cli-');
  const src = join(dir, 'small.raw');
  writeFileSync(src, Buffer.alloc(256 * 1024, 1));
  const cache = join(dir, 'cache');
  const pulled = diskpipe(['pull', '-p', '--cache-dir', cache, src]);
  assert.equal(pulled.status, 0, pulled.stderr);
  assert.equal(pulled.stderr, '');
  const made = diskpipe([
    'disk',
    'create',
    '-p',
    '--cache-dir',
    cache,
    '--from',
    src,
    join(dir, 'vm.raw'),
  ]);
  assert.equal(made.status, 0, made.stderr);
  assert.equal(made.stderr, '');
});

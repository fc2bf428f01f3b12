import assert from 'node:assert/strict';
import { test } from 'node:test';
import { humanSize } from '../../src/cli/common.js';
import { formatDuration, ProgressBar } from '../../src/cli/progress.js';

/** A stand-in for process.stderr that records what is written. */
function fakeStream(isTTY: boolean, columns = 100) {
  const written: string[] = [];
  const stream = { isTTY, columns, write: (s: string) => written.push(s) > 0 };
  return { stream: stream as unknown as NodeJS.WriteStream, written };
}

test('draws nothing when the stream is not a terminal, or when disabled', () => {
  for (const [tty, enabled] of [
    [false, true],
    [true, false],
  ] as const) {
    const { stream, written } = fakeStream(tty);
    const bar = new ProgressBar({ stream, enabled });
    bar.update(10, 100);
    bar.update(100, 100);
    bar.finish();
    assert.deepEqual(written, []);
  }
});

test('draws bytes, percent, rate and ETA; throttles; clears on finish', () => {
  const { stream, written } = fakeStream(true);
  const bar = new ProgressBar({ stream, label: 'disk.img', intervalMs: 60_000 });
  bar.update(512 * 1024 * 1024, 2 * 1024 ** 3);
  bar.update(600 * 1024 * 1024, 2 * 1024 ** 3); // within the interval: not drawn
  assert.equal(written.length, 1);
  assert.match(
    written[0]!,
    /^\r\x1b\[K\[#+ +\] {2}disk\.img +25% +512 MiB \/ 2 GiB +.+\/s {2}ETA +(\d+:\d\d|--:--)$/,
  );
  bar.finish();
  assert.equal(written.at(-1), '\r\x1b[K');
  const line = bar.line(performance.now(), 100);
  assert.match(line, /29%/);
  assert.ok(line.length <= 100);
});

test('unknown total (a stream): bytes and rate only', () => {
  const { stream } = fakeStream(true, 60);
  const bar = new ProgressBar({ stream });
  bar.update(3 * 1024 * 1024);
  const line = bar.line();
  assert.match(line, /^ +3 MiB +.+\/s$/);
});

test('sizes keep their integer zeros (360 MiB, not 36 MiB)', () => {
  const MiB = 1024 * 1024;
  assert.equal(humanSize(360 * MiB), '360 MiB');
  assert.equal(humanSize(1000 * MiB), '1000 MiB');
  assert.equal(humanSize(1.5 * MiB), '1.5 MiB');
  assert.equal(humanSize(2 * MiB), '2 MiB');
  assert.equal(humanSize(10 * 1024 ** 3), '10 GiB');
  assert.equal(humanSize(100), '100 B');
});

test('formatDuration', () => {
  assert.equal(formatDuration(0), '0:00');
  assert.equal(formatDuration(61.4), '1:01');
  assert.equal(formatDuration(3725), '1:02:05');
});

test('the rate is measured over the last few seconds, not since the start', () => {
  const { stream } = fakeStream(true, 120);
  let t = 0;
  const bar = new ProgressBar({ stream, now: () => t });
  const MiB = 1024 * 1024;
  // 60 s at 1 MiB/s, then 10 s at 10 MiB/s: the rate shows 10 MiB/s, not the average.
  for (; t <= 60_000; t += 1000) bar.update((t / 1000) * MiB, 1000 * MiB);
  for (let i = 1; i <= 10; i++) {
    t += 1000;
    bar.update(60 * MiB + i * 10 * MiB, 1000 * MiB);
  }
  assert.equal(Math.round(bar.rate() / MiB), 10);
  assert.match(bar.fields(), /10 MiB\/s {2}ETA +1:24$/);
});

test('fields keep a stable width as the numbers change; unknown totals show no percentage', () => {
  const { stream } = fakeStream(true, 120);
  let t = 0;
  const bar = new ProgressBar({ stream, label: 'converting', now: () => t });
  const widths = new Set<number>();
  for (const done of [0, 1000, 5 * 1024 * 1024, 300 * 1024 * 1024, 2 * 1024 ** 3]) {
    t += 700;
    bar.update(done, 2 * 1024 ** 3);
    widths.add(bar.fields().length);
  }
  assert.equal(widths.size, 1, `widths ${[...widths].join(' ')}`);
  const stream2 = new ProgressBar({ stream, now: () => t });
  stream2.update(5 * 1024 * 1024);
  assert.doesNotMatch(stream2.fields(), /%|ETA/);
});

/**
 * The public API changes only on purpose: the names and kinds exported by dist/src/index.d.ts
 * must equal api/exports.txt (`npm run api:update` rewrites it), and every type an export
 * mentions must be exported too.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

interface Surface {
  lines: string[];
  missing: string[];
}

test('api: the exports match api/exports.txt and every type they mention is exported', async () => {
  const script = join(repo, 'scripts', 'api-surface.mjs');
  const { apiSurface } = (await import(script)) as { apiSurface: () => Surface };
  const { lines, missing } = apiSurface();
  const expected = readFileSync(join(repo, 'api', 'exports.txt'), 'utf8')
    .trimEnd()
    .split('\n');
  const added = lines.filter((l) => !expected.includes(l)).map((l) => `+ ${l}`);
  const removed = expected.filter((l) => !lines.includes(l)).map((l) => `- ${l}`);
  const diff = [...removed, ...added];
  assert.deepEqual(
    diff,
    [],
    `the public API changed (if on purpose: npm run api:update):\n${diff.join('\n')}`,
  );
  assert.deepEqual(missing, [], `types used by the API but not exported:\n${missing.join('\n')}`);
});

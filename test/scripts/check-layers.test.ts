/** The layering checker (scripts/check-layers.mjs) finds upward imports and cycles, and src/ has none. */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../helpers/peers.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
type Check = (root: string) => string[];

async function checker(): Promise<Check> {
  const path = join(repo, 'scripts', 'check-layers.mjs');
  const mod = (await import(path)) as { checkLayers: Check };
  return mod.checkLayers;
}

function tree(files: Record<string, string>): string {
  const root = tempDir('diskpipe-layers-');
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, name)), { recursive: true });
    writeFileSync(join(root, name), text);
  }
  return root;
}

test('check-layers: an upward import and a cycle are reported, src/ is clean', async () => {
  const checkLayers = await checker();
  const bad = tree({
    'errors.ts': 'export class E {}\n',
    'io/a.ts': "import { x } from '../ops/b.js';\nexport const a = x;\n",
    'ops/b.ts': 'export const x = 1;\n',
    'ops/c.ts': "import type { D } from './d.js';\nexport type C = D;\n",
    'ops/d.ts': "import type { C } from './c.js';\nexport type D = C | 1;\n",
  });
  const problems = checkLayers(bad);
  assert.deepEqual(problems, [
    'io/a.ts (io) imports ops/b.ts (ops), a higher layer',
    'import cycle: ops/c.ts -> ops/d.ts -> ops/c.ts',
  ]);
  assert.deepEqual(checkLayers(join(repo, 'src')), []);
});

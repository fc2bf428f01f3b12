// Runs the compiled tests with node:test. Tests live in test/ and are compiled to dist/test/.
//   node scripts/test.mjs [NAME...]          every *.test.ts (npm test), or those whose path
//                                            contains a NAME
//   node scripts/test.mjs --fuzz [NAME...]   the fuzz runs, *.fuzz.ts (npm run fuzz)
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const fuzz = args.includes('--fuzz');
const filter = args.filter((a) => a !== '--fuzz');
const suffix = fuzz ? '.fuzz.js' : '.test.js';

function find(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return find(path);
    return name.endsWith(suffix) ? [path] : [];
  });
}

// tsc never deletes outputs: a test renamed or removed in test/ leaves its old .js behind.
const hasSource = (f) => existsSync(f.replace(/^dist[/\\]/, '').replace(/\.js$/, '.ts'));

const files = find('dist/test')
  .filter(hasSource)
  .filter((f) => filter.length === 0 || filter.some((s) => f.includes(s)))
  .sort();
if (files.length === 0) {
  console.error(`no ${suffix} files match ${filter.join(' ') || '(all)'}; run npx tsc -p . first?`);
  process.exit(1);
}
// No --test-timeout: in Node 20 it applies to each whole file, and a big file on a loaded
// 2-core machine took longer than 5 minutes and was cancelled. Tests bound work by counting;
// a real hang is left to the CI job's limit.
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...files], {
  stdio: 'inherit',
});
process.exit(result.status ?? 1);

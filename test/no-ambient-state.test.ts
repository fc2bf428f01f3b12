/**
 * The library has no ambient state: outside src/cli nothing reads the environment or writes
 * to stderr (the CLI fills options from the environment and prints what the library reports
 * through callbacks). PATH is the one exception: finding a system decompressor is a PATH
 * lookup, as spawn itself does.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const src = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');

function* sources(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sources(path);
    else if (entry.name.endsWith('.ts')) yield path;
  }
}

test('library: no process.env reads (but PATH) and no stderr writes outside src/cli', () => {
  const found: string[] = [];
  for (const file of sources(src)) {
    const name = relative(src, file);
    if (name.startsWith('cli/')) continue;
    readFileSync(file, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        const code = line.replace(/\/\/.*$/, '');
        if (/^\s*\*/.test(code)) return; // doc comments may name the variables
        if (/process\.env(?!\.PATH\b)/.test(code) || /process\.stderr/.test(code))
          found.push(`${name}:${i + 1}: ${line.trim()}`);
      });
  }
  assert.deepEqual(found, []);
});

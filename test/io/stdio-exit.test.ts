import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { tempDir } from '../helpers/peers.js';

const dir = tempDir();
const native = pathToFileURL(new URL('../../src/io/native.js', import.meta.url).pathname).href;

// koffi fsyncs fds 1 and 2 when the process exits (a static destructor in its library). The CLI
// points them at /dev/null at 'exit' when they name files; what was printed stays printed.
test('stdio-exit: after the exit hook, stdout and stderr no longer name the log files (koffi fsyncs them at exit)', () => {
  const out = join(dir, 'out.log');
  const err = join(dir, 'err.log');
  const seen = join(dir, 'seen.txt');
  const script = `
    import { fstatSync, writeFileSync } from 'node:fs';
    import { defuseStdioSyncAtExit, nativeStatus } from '${native}';
    if (!nativeStatus().native) throw new Error('no native layer');
    process.once('exit', defuseStdioSyncAtExit);
    process.once('exit', () => writeFileSync('${seen}', [1, 2].map((fd) => fstatSync(fd).isFile()).join(',')));
    process.stdout.write('printed before exit\\n');
    process.stderr.write('warned before exit\\n');
  `;
  const outFd = openSync(out, 'w');
  const errFd = openSync(err, 'w');
  try {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', outFd, errFd],
    });
    assert.equal(r.status, 0, readFileSync(err, 'utf8'));
  } finally {
    closeSync(outFd);
    closeSync(errFd);
  }
  assert.equal(readFileSync(seen, 'utf8'), 'false,false');
  assert.equal(readFileSync(out, 'utf8'), 'printed before exit\n');
  assert.equal(readFileSync(err, 'utf8'), 'warned before exit\n');
});

test('stdio-exit: stdout and stderr that are pipes (socket pairs from spawn) are left alone', () => {
  const seen = join(dir, 'seen-pipe.txt');
  const script = `
    import { fstatSync, writeFileSync } from 'node:fs';
    import { defuseStdioSyncAtExit, nativeStatus } from '${native}';
    nativeStatus();
    process.once('exit', defuseStdioSyncAtExit);
    process.once('exit', () => writeFileSync('${seen}', [1, 2].map((fd) => fstatSync(fd).isSocket() || fstatSync(fd).isFIFO()).join(',')));
    process.stdout.write('through the pipe');
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'through the pipe');
  assert.equal(readFileSync(seen, 'utf8'), 'true,true');
});

/**
 * SIGINT/SIGTERM/SIGHUP (issue 10, item 8): exit 130/143/129 with every temporary file
 * removed — the output's temporary name beside DST and staging directories in
 * $DISKPIPE_TMPDIR — whenever the signal comes; and a signal after the final rename does not
 * turn a finished run into a failure. No timing: each test waits for an observable state (a
 * file appears, a module loads, a rename happens) before signalling.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer } from '../helpers/http-server.js';
import { qemuImg, qemuIo, run, sparseFile, tempDir } from '../helpers/peers.js';

const dir = tempDir();
const MiB = 1024 * 1024;
const main = new URL('../../src/cli/main.js', import.meta.url).pathname;
const SIGNALS = [
  ['SIGINT', 130],
  ['SIGTERM', 143],
  ['SIGHUP', 129],
] as const;

interface Child {
  child: ChildProcess;
  done: Promise<{ status: number | null; signal: NodeJS.Signals | null; stderr: string }>;
  exited: () => boolean;
}

function start(args: string[], env: NodeJS.ProcessEnv = {}, nodeArgs: string[] = []): Child {
  const child = spawn(process.execPath, [...nodeArgs, main, ...args], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  let exited = false;
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdin!.on('error', () => {}); // the child may exit before reading everything
  const done = new Promise<{
    status: number | null;
    signal: NodeJS.Signals | null;
    stderr: string;
  }>((resolve) =>
    child.on('close', (status, signal) => {
      exited = true;
      resolve({ status, signal, stderr });
    }),
  );
  return { child, done, exited: () => exited };
}

/** Polls until `ready()` holds; fails if the child exits first (no deadline of our own). */
async function waitFor(c: Child, what: string, ready: () => boolean): Promise<void> {
  while (!ready()) {
    if (c.exited()) assert.fail(`exited before ${what}: ${(await c.done).stderr}`);
    await sleep(10);
  }
}

function fresh(name: string): string {
  const d = join(dir, `${name}-${process.hrtime.bigint()}`);
  mkdirSync(d);
  return d;
}

test('handlers exist before the commands are loaded', async () => {
  // A module loader hook sends the signal while src/cli/commands/index.js is being loaded.
  const hooks = join(dir, 'signal-on-load.mjs');
  writeFileSync(
    hooks,
    `export async function load(url, context, next) {
       if (url.endsWith('/cli/commands/index.js')) process.kill(process.pid, process.env.SIGNAL_ON_LOAD);
       return next(url, context);
     }`,
  );
  const register = `data:text/javascript,import{register}from"node:module";register(${JSON.stringify(
    `file://${hooks}`,
  )})`;
  for (const [signal, code] of SIGNALS) {
    const c = start(['--help'], { SIGNAL_ON_LOAD: signal }, ['--import', register]);
    const r = await c.done;
    assert.equal(r.signal, null, `${signal} killed the process before its handlers existed`);
    assert.equal(r.status, code, r.stderr);
  }
});

test('a signal during staging of a .qcow2.xz from stdin removes the staging directory', async () => {
  // Incompressible data, so half the .xz stream decompresses to megabytes (staging starts).
  const raw = join(dir, 'stage.raw');
  writeFileSync(raw, randomBytes(8 * MiB));
  const qcow2 = join(dir, 'stage.qcow2');
  await qemuImg('convert', '-O', 'qcow2', raw, qcow2);
  await run('xz', ['-k', '-0', '-T1', qcow2]);
  const xz = readFileSync(`${qcow2}.xz`);
  for (const [signal, code] of SIGNALS) {
    const stage = fresh('stage');
    const out = fresh('out');
    const c = start(['convert', '-', join(out, 'x.raw')], { DISKPIPE_TMPDIR: stage });
    // Half the stream, and stdin stays open: staging has begun and cannot finish.
    c.child.stdin!.write(xz.subarray(0, xz.length >> 1));
    await waitFor(c, 'staging began', () => readdirSync(stage).length > 0);
    assert.match(readdirSync(stage)[0]!, /^diskpipe-stage-/);
    c.child.kill(signal);
    const r = await c.done;
    assert.equal(r.status, code, r.stderr);
    assert.deepEqual(readdirSync(stage), [], 'staging directory removed');
    assert.deepEqual(readdirSync(out), []);
  }
});

test('kill -9 during staging: the next run that stages removes the orphaned directory', async () => {
  const raw = join(dir, 'killed.raw');
  writeFileSync(raw, randomBytes(8 * MiB));
  const qcow2 = join(dir, 'killed.qcow2');
  await qemuImg('convert', '-O', 'qcow2', raw, qcow2);
  await run('xz', ['-k', '-0', '-T1', qcow2]);
  const xz = readFileSync(`${qcow2}.xz`);
  const stage = fresh('killed-stage');
  const out = fresh('killed-out');
  const c = start(['convert', '-', join(out, 'x.raw')], { DISKPIPE_TMPDIR: stage });
  c.child.stdin!.write(xz.subarray(0, xz.length >> 1));
  await waitFor(c, 'staging began', () => readdirSync(stage).length > 0);
  const [orphan] = readdirSync(stage);
  c.child.kill('SIGKILL');
  await c.done;
  assert.deepEqual(readdirSync(stage), [orphan], 'kill -9 cannot clean up');
  // A live owner's directory is left alone.
  const live = join(stage, `diskpipe-stage-${process.pid}-AbC123`);
  mkdirSync(live);
  const next = start(['convert', '-', join(out, 'y.raw')], { DISKPIPE_TMPDIR: stage });
  next.child.stdin!.end(xz);
  const r = await next.done;
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(readdirSync(stage), [basename(live)]);
  assert.deepEqual(readdirSync(out), ['y.raw']);
});

test('a signal during a slow convert removes the temporary output; DST untouched', async () => {
  // 32 MiB of data from an HTTP server that stalls after 1 MiB of each response: the probe
  // reads less than that, the copy's 2 MiB requests never complete.
  const src = sparseFile(join(dir, 'slow.raw'), 32 * MiB);
  await qemuIo(src, ['write -P 0x22 0 32M'], 'raw');
  const server = await startServer({ stallAfter: MiB });
  server.files.set('slow.raw', { path: src });
  try {
    for (const [signal, code] of SIGNALS) {
      const out = fresh('slow');
      const dst = join(out, 'x.raw');
      writeFileSync(dst, 'precious');
      const stage = fresh('slow-stage');
      const c = start(['convert', '-f', 'raw', server.url('slow.raw'), dst], {
        DISKPIPE_TMPDIR: stage,
      });
      await waitFor(c, 'the temporary output appeared', () => readdirSync(out).length > 1);
      c.child.kill(signal);
      const r = await c.done;
      assert.equal(r.status, code, r.stderr);
      assert.deepEqual(readdirSync(out), ['x.raw'], 'temporary output removed');
      assert.equal(readFileSync(dst, 'utf8'), 'precious');
      assert.deepEqual(readdirSync(stage), []);
    }
  } finally {
    await server.close();
  }
});

test('a signal right after the final rename: the run still succeeds', async () => {
  // Preload: the moment a rename has put the output in place, the process signals itself.
  const preload = join(dir, 'signal-after-rename.mjs');
  writeFileSync(
    preload,
    `import fs from 'node:fs';
     import { syncBuiltinESMExports } from 'node:module';
     const signal = process.env.SIGNAL_AFTER_RENAME;
     const renameSync = fs.renameSync;
     fs.renameSync = (a, b) => { renameSync(a, b); process.kill(process.pid, signal); };
     const rename = fs.promises.rename;
     fs.promises.rename = async (a, b) => { await rename(a, b); process.kill(process.pid, signal); };
     syncBuiltinESMExports();`,
  );
  const src = sparseFile(join(dir, 'renamed-src.raw'), 4 * MiB);
  await qemuIo(src, ['write -P 0x33 1M 1M'], 'raw');
  for (const [signal] of SIGNALS) {
    for (const args of [['convert', src], ['clone', src], ['create']]) {
      const out = fresh('renamed');
      const dst = join(out, 'x.raw');
      writeFileSync(dst, 'old');
      const full = args[0] === 'create' ? [...args, dst, '4M'] : [...args, dst];
      const c = start(full, { SIGNAL_AFTER_RENAME: signal }, ['--import', preload]);
      const r = await c.done;
      assert.equal(r.signal, null);
      assert.equal(r.status, 0, `${signal} ${args[0]}: ${r.stderr}`);
      assert.deepEqual(readdirSync(out), ['x.raw']);
      if (args[0] !== 'create') {
        assert.match(await qemuImg('compare', '-f', 'raw', '-F', 'raw', src, dst), /identical/);
      }
    }
  }
});

/**
 * Hostile images through the command line: `diskpipe info` and `diskpipe map` print one line
 * `diskpipe: <message>` on stderr and exit 2 — never a stack trace. Hand-made cases first,
 * then fuzz cases that the library refuses, replayed through the CLI with the same message.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { mixedRaw } from '../formats/vmdk-vdi-peer.js';
import { diskpipe, qemuImg, tempDir } from '../helpers/peers.js';
import { caseOptions, loadPlan, makeCase, writeCase } from './cases.js';
import { exercise } from './exercise.js';
import { prepare } from './harness.js';
import { targets } from './targets.js';

const root = tempDir('diskpipe-fuzz-cli-');
const dir = join(root, 'images');
mkdirSync(dir);
const src = await mixedRaw(root, 'src.raw', 4 * 1024 * 1024 + 1536);

/** Runs the CLI and checks the error contract; returns the message. */
function refused(args: string[]): string {
  return checkRefusal(args, diskpipe(args));
}

function checkRefusal(args: string[], r: ReturnType<typeof diskpipe>): string {
  assert.equal(
    r.status,
    2,
    `diskpipe ${args.join(' ')}: status ${r.status}\n${r.stdout}${r.stderr}`,
  );
  assert.equal(r.stdout, '', 'nothing on stdout');
  assert.match(r.stderr, /^diskpipe: [^\n]+\n$/, `one line on stderr: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /internal error|\bat .+:\d+:\d+/, r.stderr);
  return r.stderr.slice('diskpipe: '.length, -1);
}

async function convert(format: string, name: string, options: string[] = []): Promise<string> {
  const path = join(dir, name);
  await qemuImg('convert', '-f', 'raw', '-O', format, ...options, src, path);
  return path;
}

function edited(from: string, name: string, edit: (b: Buffer) => void): string {
  const b = readFileSync(from);
  edit(b);
  const path = join(dir, name);
  writeFileSync(path, b);
  return path;
}

test('cli: a truncated VDI header', async () => {
  const path = await convert('vdi', 'short.vdi');
  truncateSync(path, 300);
  assert.match(refused(['info', path]), /short\.vdi: file is too small for a VDI header/);
});

test('cli: a VMDK descriptor naming a host file', () => {
  const path = join(dir, 'escape.vmdk');
  writeFileSync(
    path,
    '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 8 FLAT "/etc/hostname" 0\n',
  );
  const msg = refused(['map', '--json', path]);
  assert.match(
    msg,
    /extent file '\/etc\/hostname'.*outside the image's directory.*--allow-backing/,
  );
});

test('cli: a QED backing file with --untrusted', async () => {
  await convert('qed', 'base.qed');
  const path = join(dir, 'overlay.qed');
  await qemuImg('create', '-f', 'qed', '-b', 'base.qed', '-F', 'qed', path);
  const msg = refused(['info', '--json', '--untrusted', path]);
  assert.match(
    msg,
    /backing file reference 'base\.qed' refused: the image is opened with --untrusted/,
  );
});

test('cli: a VHDX without a valid region table', async () => {
  const good = await convert('vhdx', 'good.vhdx');
  const path = edited(good, 'noregions.vhdx', (b) => b.fill(0, 192 * 1024, 320 * 1024));
  assert.match(refused(['map', path]), /no valid region table/);
});

test('cli: a VHD whose BAT points past the end of the file', async () => {
  const good = await convert('vpc', 'good.vhd');
  const path = edited(good, 'bat.vhd', (b) => {
    const dyn = Number(b.readBigUInt64BE(16));
    const bat = Number(b.readBigUInt64BE(dyn + 16));
    b.writeUInt32BE(0x7fffff00, bat);
  });
  assert.match(refused(['info', path]), /BAT entry 0 points past the end of the file/);
});

test('cli: a VMDK grain table entry past the end: info works, map fails', async () => {
  const good = await convert('vmdk', 'good.vmdk');
  const path = edited(good, 'grain.vmdk', (b) => {
    const gd = Number(b.readBigUInt64LE(56)) * 512;
    b.writeUInt32LE(0x7ffffff0, b.readUInt32LE(gd) * 512);
  });
  assert.equal(diskpipe(['info', path]).status, 0);
  assert.match(refused(['map', '--json', path]), /grain 0 at sector 2147483632 is past the end/);
});

// Fuzz cases the library refuses at open must be refused by the CLI with the same message;
// cases that fail later must still fail as one line.
for (const name of ['vmdk-sparse', 'vdi', 'vhdx', 'qed-backing']) {
  test(`cli: fuzz cases of ${name} replayed through info and map`, async () => {
    const target = targets.find((t) => t.name === name)!;
    const workspace = join(root, 'fuzz');
    mkdirSync(workspace, { recursive: true });
    const prepared = await prepare(target, src, workspace);
    const { pristine, plan } = loadPlan(target, prepared);
    const wanted = new Set(['open', 'later']);
    for (let i = 0; i < 400 && wanted.size > 0; i++) {
      const c = makeCase(target, pristine, plan, 'cli', i);
      writeCase(prepared.casePath, c.bytes, prepared.allocated);
      const o = await exercise(prepared.casePath, caseOptions(c), c.rng, {
        readBytes: 8 << 20,
        zeroCheckBytes: 1 << 20,
      });
      assert.equal(o.failure, undefined, `case ${i}: ${c.steps.join('; ')}`);
      const kind = o.stage === 'open' ? 'open' : 'later';
      if (!o.code || !wanted.delete(kind)) continue;
      const path = join(prepared.dir, `case-${i}-${name}`);
      copyFileSync(prepared.casePath, path);
      const f = [...(c.format ? ['-f', c.format] : []), ...(c.untrusted ? ['--untrusted'] : [])];
      const what = `case ${i} (${c.steps.join('; ')}): ${o.message}`;
      if (kind === 'open') {
        for (const cmd of ['info', 'map']) {
          const msg = refused([cmd, '--json', ...f, path]);
          assert.equal(msg, o.message!.replaceAll(prepared.casePath, path), what);
        }
      } else {
        for (const cmd of ['info', 'map']) {
          const args = [cmd, ...f, path];
          const r = diskpipe(args);
          if (r.status !== 0) checkRefusal(args, r);
        }
      }
    }
    assert.equal(wanted.size, 0, `found no fuzz case failing at: ${[...wanted].join(', ')}`);
  });
}

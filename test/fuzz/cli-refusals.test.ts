/**
 * Hostile images through the command line: `diskpipe info` and `diskpipe map` print one line
 * `diskpipe: <message>` on stderr and exit 2 — never a stack trace. Hand-made cases; fuzz
 * cases replayed through the CLI are in cli.fuzz.ts (`npm run fuzz`).
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { mixedRaw } from '../formats/vmdk-vdi-peer.js';
import { diskpipe, qemuImg, tempDir } from '../helpers/peers.js';
import { refused } from './cli-contract.js';

const root = tempDir('diskpipe-fuzz-cli-');
const dir = join(root, 'images');
mkdirSync(dir);
const src = await mixedRaw(root, 'src.raw', 4 * 1024 * 1024 + 1536);

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
  const msg = refused(['map', '--json', '--untrusted', path]);
  assert.match(
    msg,
    /backing file reference 'base\.qed' refused: the image is opened with --untrusted/,
  );
  // info describes the image and names the refused reference instead.
  const info = diskpipe(['info', '--json', '--untrusted', path]);
  assert.equal(info.status, 0, info.stderr);
  assert.match(JSON.parse(info.stdout)['backing-refused'], /refused: the image is opened with/);
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

import type { SparsifyReport } from '../../filters/sparsify/index.js';
import { endsWithFixedVhdFooter } from '../../formats/vhd/fixed-probe.js';
import type { Image } from '../../image/types.js';
import { openImage } from '../../open.js';
import { describeChain, infoJson, type LayerInfo } from '../../ops/info.js';
import { withoutCredentials } from '../../sources/credentials.js';
import { defineCommand } from '../command.js';
import { humanSize, openOptions, print } from '../common.js';
import { flag, value } from '../options.js';
import { READ_OPTIONS } from '../shared-options.js';

export const info = defineCommand({
  synopsis: 'diskpipe info [--json] [--backing-chain] [--sparsify] [-f FMT] IMAGE',
  summary: 'Shows the format, sizes and features of an image (qemu-img info fields).',
  options: {
    json: flag('qemu-img info --output=json field names and meanings'),
    'backing-chain': flag('every layer of the backing chain (JSON: an array, as qemu-img)'),
    format: value('FMT', 'do not probe; open as FMT', { short: 'f' }),
    sparsify: flag([
      'also show, per partition, what convert --sparsify would drop',
      '(JSON: a "sparsify" object)',
    ]),
    ...READ_OPTIONS,
  },
  operandCount: [1, 1],
  async run(values, [spec]) {
    // A backing file the trust rule refuses is named in the output, not an error (qemu-img
    // info shows the header too); convert, checksum and serve still refuse such an image.
    // An HTTP source without ETag/Last-Modified: a change between range requests may go unseen.
    let unverified = false;
    const onUnverified = () => {
      unverified = true;
    };
    const open = openOptions(values);
    const image = await openImage(spec!, {
      ...open,
      http: { ...open.http, onUnverified },
      describeOnly: values.sparsify !== true, // sparsify reads the guest's data
    });
    try {
      if (values.format === undefined && image.format === 'raw' && image.source) {
        if (await endsWithFixedVhdFooter(image.source)) {
          process.stderr.write(
            `diskpipe: note: ${withoutCredentials(spec!)} looks like a fixed VHD; use -f vpc\n`,
          );
        }
      }
      const chain = await describeChain(image, withoutCredentials(spec!));
      const shown = values['backing-chain'] ? chain : chain.slice(0, 1);
      // The filter shares `image` (closed below), so it is not closed on its own.
      const sparse = values.sparsify ? await sparsifyReportOf(image) : undefined;
      if (values.json) {
        const json = shown.map(infoJson);
        if (unverified) Object.assign(json[0]!, { consistency: 'unverified' });
        if (sparse) Object.assign(json[0]!, { sparsify: sparse });
        print(JSON.stringify(values['backing-chain'] ? json : json[0], null, 4));
      } else {
        const text = shown.map(humanInfo);
        if (unverified) text[0] += `\n${UNVERIFIED_LINE}`;
        print(text.join('\n\n'));
        if (!values['backing-chain'] && chain.length > 1) {
          print(
            `backing chain: ${chain.map((l) => `${l.filename} (${l.details.format})`).join(' -> ')}`,
          );
        }
        if (sparse) print(humanSparsify(sparse).join('\n'));
      }
    } finally {
      await image.close();
    }
    return 0;
  },
});

const UNVERIFIED_LINE =
  'consistency: unverified (the server sends no ETag or Last-Modified: a change between requests may go unnoticed)';

function humanInfo({ filename, details: d, backingRefused }: LayerInfo): string {
  const lines = [
    `image: ${filename}`,
    `file format: ${d.format}`,
    `virtual size: ${humanSize(d.virtualSize)} (${d.virtualSize} bytes)`,
  ];
  if (d.actualSize !== undefined) lines.push(`disk size: ${humanSize(d.actualSize)}`);
  if (d.clusterSize !== undefined) lines.push(`cluster_size: ${d.clusterSize}`);
  if (d.encrypted) lines.push('encrypted: yes');
  if (d.backingFilename !== undefined) {
    const actual =
      d.fullBackingFilename && d.fullBackingFilename !== d.backingFilename
        ? ` (actual path: ${d.fullBackingFilename})`
        : '';
    lines.push(`backing file: ${d.backingFilename}${actual}`);
    if (backingRefused !== undefined) lines.push(`  (not opened: ${backingRefused})`);
  }
  if (d.backingFormat !== undefined) lines.push(`backing file format: ${d.backingFormat}`);
  if (d.dataFile !== undefined) lines.push(`data file: ${d.dataFile}`);
  for (const reason of d.refusedFiles ?? []) lines.push(`  (not opened: ${reason})`);
  if (d.dirty) lines.push('dirty: yes (the image was not closed cleanly)');
  if (d.snapshots && d.snapshots.length > 0) {
    lines.push(
      'Snapshot list:',
      'ID        TAG               VM SIZE                DATE     VM CLOCK',
    );
    for (const s of d.snapshots) {
      const date = new Date(s.dateSec * 1000).toISOString().replace('T', ' ').slice(0, 19);
      lines.push(
        `${s.id.padEnd(10)}${s.name.padEnd(18)}${humanSize(s.vmStateSize).padStart(7)} ${date} ${clock(s.vmClockNsec)}`,
      );
    }
  }
  if (d.specific && Object.keys(d.specific).length > 0) {
    lines.push('Format specific information:');
    for (const [k, v] of Object.entries(d.specific))
      lines.push(
        `    ${k.replace(/-/g, ' ')}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`,
      );
  }
  return lines.join('\n');
}

function clock(nsec: number): string {
  const ms = Math.floor(nsec / 1e6);
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor(ms / 60_000) % 60;
  const s = Math.floor(ms / 1000) % 60;
  return `${String(h).padStart(4, '0')}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}.${String(ms % 1000).padStart(3, '0')}`;
}

/** The sparsify filter is loaded only when asked for (startup time of a plain `info`). */
async function sparsifyReportOf(image: Image): Promise<SparsifyReport> {
  const { SparsifyImage, sparsifyReport } = await import('../../filters/sparsify/index.js');
  return sparsifyReport(await SparsifyImage.open(image));
}

/** The human form of a sparsify report (info --sparsify, map --sparsify). */
export function humanSparsify(r: SparsifyReport): string[] {
  const lines = [
    `sparsify: ${humanSize(r.droppedBytes)} (${r.droppedBytes} bytes) would be dropped`,
  ];
  lines.push(
    `    partition table: ${r.partitionTable}${r.reason ? ` (passed through: ${r.reason})` : ''}`,
  );
  for (const p of r.partitions) {
    const where = `    ${p.number === 0 ? 'whole disk' : `partition ${p.number}`} at ${p.start} (${humanSize(p.length)}, ${p.type})`;
    const fs = p.filesystem ?? 'unknown';
    lines.push(
      p.action === 'sparsify'
        ? `${where}: ${fs}, ${humanSize(p.freeBytes ?? 0)} free, ${humanSize(p.droppedBytes ?? 0)} dropped`
        : `${where}: ${fs}, passed through: ${p.reason ?? ''}`,
    );
  }
  return lines;
}

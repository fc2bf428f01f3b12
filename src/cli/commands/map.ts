import type { Image } from '../../image/types.js';
import { openImage } from '../../open.js';
import { AllocationBar, mapEntryJson, mapImage } from '../../ops/map.js';
import { defineCommand } from '../command.js';
import { humanSize, openOptions, print } from '../common.js';
import { flag, value } from '../options.js';
import { READ_OPTIONS } from '../shared-options.js';
import { humanSparsify } from './info.js';

export const map = defineCommand({
  synopsis: 'diskpipe map [--json] [--sparsify] [-f FMT] IMAGE',
  summary: 'Shows where an image holds data, zeroes and holes.',
  options: {
    json: flag([
      'qemu-img map --output=json entries: start, length, depth, present, zero,',
      'data, offset',
    ]),
    sparsify: flag([
      'map the image as convert --sparsify would write it (free filesystem',
      'blocks read as zeroes); human output first says what is dropped, per',
      'partition',
    ]),
    format: value('FMT', 'do not probe; open as FMT', { short: 'f' }),
    ...READ_OPTIONS,
  },
  notes: [
    'Human output starts with a bar of the whole image: # data, 0 allocated zeroes, . unallocated.',
  ],
  operandCount: [1, 1],
  async run(values, [spec]) {
    const opened = await openImage(spec!, openOptions(values));
    // Loaded only when asked for (startup time of a plain `map`).
    const filter = values.sparsify ? await import('../../filters/sparsify/index.js') : undefined;
    const sparse = filter ? await filter.sparsify(opened) : undefined;
    const image: Image = sparse ?? opened;
    try {
      if (filter && sparse && !values.json) {
        print(humanSparsify(await filter.sparsifyReport(sparse)).join('\n'));
      }
      if (values.json) {
        // Streamed, one entry per line, in qemu-img's layout, so huge maps never sit in memory.
        let first = true;
        for await (const e of mapImage(image)) {
          process.stdout.write(`${first ? '[' : ',\n'}${qemuStyle(mapEntryJson(e))}`);
          first = false;
        }
        print(first ? '[]' : ']');
        return 0;
      }
      const bar = new AllocationBar(image.size);
      const rows: string[] = [];
      let data = 0;
      for await (const e of mapImage(image)) {
        bar.add(e);
        if (e.data) data += e.length;
        const kind = e.data ? 'data' : e.present ? 'zero' : 'hole';
        const where = e.hostOffset !== undefined ? `0x${e.hostOffset.toString(16)}` : '-';
        if (rows.length < 10_000)
          rows.push(
            `${hex(e.offset)}${hex(e.length)}${kind.padEnd(6)}${String(e.depth).padEnd(7)}${where}`,
          );
      }
      print(`[${bar}]  ${humanSize(image.size)}, ${humanSize(data)} data`);
      print(
        `${'Offset'.padEnd(20)}${'Length'.padEnd(20)}${'Kind'.padEnd(6)}${'Depth'.padEnd(7)}Host offset`,
      );
      for (const r of rows) print(r);
      if (rows.length === 10_000) print('... (use --json for the full map)');
    } finally {
      await image.close();
    }
    return 0;
  },
});

function hex(n: number): string {
  return `0x${n.toString(16)}`.padEnd(20);
}

/** `{ "start": 0, "length": 65536, ...}` exactly as qemu-img prints each map entry. */
function qemuStyle(entry: Record<string, number | boolean>): string {
  return `{ ${Object.entries(entry)
    .map(([k, v]) => `"${k}": ${v}`)
    .join(', ')}}`;
}

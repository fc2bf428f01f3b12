// Run by stdin tests: opens `-` with openStream / openImage and prints what it got.
import { createHash } from 'node:crypto';
import { openImage } from '../../src/open.js';
import { openStream } from '../../src/open-stream.js';
import { readAll } from '../helpers/extents.js';

const mode = process.argv[2];
const hash = createHash('sha256');
if (mode === 'stream') {
  const opened = await openStream('-');
  if (opened.kind === 'stream') {
    for await (const c of opened.stream.chunks()) hash.update(c);
    await opened.stream.close();
    process.stdout.write(`stream ${opened.stream.layers.join(',')} ${hash.digest('hex')}\n`);
  } else {
    hash.update(await readAll(opened.image));
    process.stdout.write(`image ${opened.image.format} ${hash.digest('hex')}\n`);
    await opened.image.close();
  }
} else {
  const image = await openImage('-', { tempDir: process.argv[3] });
  hash.update(await readAll(image));
  process.stdout.write(`image ${image.format} ${hash.digest('hex')}\n`);
  await image.close();
}

import type { Writable } from 'node:stream';
import { ioError } from '../errors.js';

/**
 * Writes one chunk to a stream and resolves when the stream has taken it, so a writer that
 * awaits each chunk never queues more than one (stdout is as slow as its reader).
 */
export function writeChunk(stream: Writable, chunk: Uint8Array, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(chunk, (err) => {
      if (err) reject(ioError(err, `write error on ${name}`));
      else resolve();
    });
  });
}

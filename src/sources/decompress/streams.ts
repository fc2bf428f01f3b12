/** Glue between async iterables and Node streams, and the accelerator (a system tool). */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { Readable, type Transform } from 'node:stream';

/**
 * The chunks of `input`, each one the consumer's to keep: views of shared memory (an inner
 * decoder's output ring, reused once two more chunks have been asked for) are copied. Node
 * streams, child pipes and frame parsers hold chunks longer than that.
 */
export async function* ownedChunks(input: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  for await (const chunk of input) {
    yield chunk.buffer instanceof SharedArrayBuffer ? Uint8Array.from(chunk) : chunk;
  }
}

/** Pipes `input` through a Node transform stream and yields its output. */
export async function* throughStream(
  input: AsyncIterable<Uint8Array>,
  transform: Transform,
): AsyncGenerator<Uint8Array> {
  const src = Readable.from(input, { objectMode: false });
  src.on('error', (err) => transform.destroy(err));
  src.pipe(transform);
  try {
    for await (const chunk of transform) yield chunk as Uint8Array;
  } finally {
    transform.destroy();
    await destroyed(src);
  }
}

/** Destroys a Readable.from stream and waits until its input iterator has been closed. */
async function destroyed(src: Readable): Promise<void> {
  if (src.closed) return;
  const closed = new Promise<void>((resolve) => src.once('close', () => resolve()));
  src.destroy();
  await closed;
}

const found = new Map<string, string | undefined>();

/** The absolute path of an executable on PATH, or undefined. */
export function findOnPath(tool: string): string | undefined {
  if (found.has(tool)) return found.get(tool);
  let hit: string | undefined;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, tool), constants.X_OK);
      hit = join(dir, tool);
      break;
    } catch {
      // not here
    }
  }
  found.set(tool, hit);
  return hit;
}

export class ToolError extends Error {}

/**
 * Runs `tool -dc` as an optional accelerator: compressed bytes in on stdin, plain bytes out.
 * Errors of the input are rethrown as they are; the tool's failure becomes a ToolError with
 * its message.
 */
export async function* spawnDecompressor(
  path: string,
  input: AsyncIterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  const child = spawn(path, ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    if (stderr.length < 4096) stderr += s;
  });
  // EPIPE when the tool stops early on bad data; its exit status says why.
  child.stdin.on('error', () => {});
  const exited = new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve(code ?? -1));
  });
  exited.catch(() => {});
  let inputError: unknown;
  const src = Readable.from(input, { objectMode: false });
  src.on('error', (err) => {
    inputError = err;
    child.kill();
  });
  src.pipe(child.stdin);
  try {
    for await (const chunk of child.stdout) yield chunk as Uint8Array;
    const code = await exited;
    if (inputError) throw inputError;
    if (code !== 0) {
      const text = stderr.trim().split('\n')[0]?.trim() ?? '';
      throw new ToolError(text || `exit status ${code}`);
    }
  } finally {
    // Kill and reap the tool, and close what fed it, before the error (or the end) goes on.
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited.catch(() => {});
    await destroyed(src);
  }
}

/**
 * Reading an answer's body: all of a range into one buffer, or chunk by chunk with
 * backpressure (a download). A body cut short, too slow or aborted is an error that says so.
 */
import { DiskpipeError, HttpError } from '../errors.js';
import type { AnyResponse, HttpResponse } from './http-client.js';
import {
  type BodyConsumer,
  CLOSED_EARLY,
  ConsumerFailure,
  type ReadTarget,
} from './http-direct.js';
import { networkError } from './http-errors.js';

/**
 * Drops an answer we do not want. The connection is closed rather than drained: the body of
 * an unwanted answer may be the whole (huge) resource.
 */
export function discard(res: AnyResponse): void {
  res.watch.stop();
  if ('body' in res) res.body.discard();
  else res.message.destroy();
}

/**
 * Feeds a download's body to `consumer`, which may keep the view it is given only until the
 * promise it returns (if any) settles; the body waits for it meanwhile. A consumer's own error
 * is rethrown as it is. `target`: where the consumer would like the bytes read (http-direct.ts;
 * node:http bodies ignore it).
 */
export async function pumpBody(
  res: AnyResponse,
  label: string,
  from: number,
  total: number | undefined,
  consumer: BodyConsumer,
  target?: ReadTarget,
): Promise<void> {
  if (!('body' in res)) {
    for await (const chunk of bodyChunks(res, label, from, total)) {
      const waiting = consumer(chunk);
      if (waiting) await waiting;
    }
    return;
  }
  let got = 0;
  try {
    await res.body.pump((chunk) => {
      got += chunk.length;
      return consumer(chunk);
    }, target);
  } catch (err) {
    if (err instanceof ConsumerFailure) throw err.error;
    throw cutShort(err === CLOSED_EARLY ? undefined : err, label, from + got, total);
  } finally {
    res.watch.stop();
    res.body.discard();
  }
}

/** Reads a body of exactly `length` bytes into a new buffer. */
export function readBody(res: HttpResponse, length: number, label: string): Promise<Buffer> {
  const body = Buffer.allocUnsafe(length);
  let got = 0;
  return new Promise((resolve, reject) => {
    const msg = res.message;
    msg.on('data', (chunk: Buffer) => {
      res.watch.add(chunk.length);
      if (got + chunk.length > length) {
        msg.destroy();
        reject(new HttpError(`${label}: server sent more bytes than requested`, true));
        return;
      }
      chunk.copy(body, got);
      got += chunk.length;
    });
    msg.on('end', () => {
      if (got === length) resolve(body);
      else
        reject(new HttpError(`${label}: connection closed after ${got} of ${length} bytes`, true));
    });
    msg.on('error', (err) => reject(cutShort(err, label, got, length)));
    // A stream destroyed with a reason (a too slow transfer, an abort) reports that reason.
    const cut = () => cutShort(msg.errored, label, got, length);
    msg.on('aborted', () => reject(cut()));
    msg.on('close', () => {
      if (got < length && !msg.complete) reject(cut());
    });
  });
}

/**
 * The body's chunks as they arrive; the socket is paused while the consumer is busy. `from`
 * and `total` (when known) make messages say where in the resource the body stopped.
 */
export async function* bodyChunks(
  res: HttpResponse,
  label: string,
  from = 0,
  total?: number,
): AsyncGenerator<Buffer> {
  let got = 0;
  try {
    for await (const chunk of res.message as AsyncIterable<Buffer>) {
      res.watch.add(chunk.length);
      got += chunk.length;
      yield chunk;
    }
  } catch (err) {
    throw cutShort(res.message.errored ?? err, label, from + got, total);
  } finally {
    // Done or not (the consumer may stop early): the rate watch ends with the body.
    res.watch.stop();
  }
  if (!res.message.complete) throw cutShort(undefined, label, from + got, total);
}

/** Why a body stopped early: the reason it was destroyed with, else a (transient) cut. */
function cutShort(
  reason: unknown,
  label: string,
  at: number,
  total: number | undefined,
): DiskpipeError {
  if (reason instanceof DiskpipeError) return reason;
  const of = total === undefined ? '' : ` of ${total}`;
  const closed = new HttpError(`${label}: connection closed after ${at}${of} bytes`, true);
  const code = (reason as { code?: string } | undefined)?.code;
  // "aborted" / ECONNRESET is the connection closing under the body: say so plainly.
  if (reason === undefined || reason === null || code === 'ECONNRESET') return closed;
  return networkError(reason, label);
}

/**
 * The compressed input as the decoders see it: its first chunk asked for at once, and its
 * failure remembered. A Node stream (fs.createReadStream of a missing file) listens for its
 * own errors only once it is iterated; a decoder that starts slowly (the WASM xz decoder
 * loads its module before the first pull) would leave the stream's 'error' event with no
 * listener, and Node then crashes the process.
 */
export interface WatchedInput {
  /** The input's chunks (iterate once). */
  readonly chunks: AsyncGenerator<Uint8Array>;
  /** The input's own error, when it failed (not the decoder's). */
  failure(): { err: unknown } | undefined;
  /** Closes the input if no decoder ever iterated it (idempotent). */
  close(): void;
}

export function watchInput(input: AsyncIterable<Uint8Array>): WatchedInput {
  const it = input[Symbol.asyncIterator]();
  const first = it.next();
  first.catch(() => {}); // awaited (and its error handled) when the decoder first pulls
  let failed: { err: unknown } | undefined;
  let started = false;
  const chunks = (async function* () {
    started = true;
    try {
      for (let r = await first; !r.done; r = await it.next()) yield r.value;
    } catch (err) {
      failed = { err };
      throw err;
    } finally {
      await it.return?.();
    }
  })();
  return {
    chunks,
    failure: () => failed,
    close: () => {
      if (started) return;
      started = true;
      // Once the first read settles: a stalled source must not hold up the caller's error.
      first.then(() => it.return?.()).catch(() => {});
    },
  };
}

/**
 * Runs a generator ahead of its consumer by up to `limit` bytes. A decoder that works on the
 * calling thread (libzstd) then decodes the next chunks while the consumer awaits its writes,
 * instead of only after them. Chunks are handed over in order; an error comes after every
 * chunk produced before it; stopping early (return/throw) stops and closes the source.
 */
export async function* runAhead(
  source: AsyncGenerator<Uint8Array>,
  limit: number,
): AsyncGenerator<Uint8Array> {
  const queue: Uint8Array[] = [];
  let queued = 0;
  let finished = false;
  let failure: { error: unknown } | undefined;
  let stopped = false;
  let dataReady: (() => void) | undefined;
  let roomReady: (() => void) | undefined;
  const signalData = () => {
    dataReady?.();
    dataReady = undefined;
  };
  const signalRoom = () => {
    roomReady?.();
    roomReady = undefined;
  };

  const pump = (async () => {
    try {
      for (;;) {
        while (queued >= limit && !stopped) {
          await new Promise<void>((resolve) => {
            roomReady = resolve;
          });
        }
        if (stopped) return;
        const r = await source.next();
        if (r.done) return;
        queue.push(r.value);
        queued += r.value.length;
        signalData();
      }
    } catch (error) {
      failure = { error };
    } finally {
      finished = true;
      signalData();
    }
  })();

  try {
    for (;;) {
      const chunk = queue.shift();
      if (chunk) {
        queued -= chunk.length;
        signalRoom();
        yield chunk;
        continue;
      }
      if (finished) {
        if (failure) throw failure.error;
        return;
      }
      await new Promise<void>((resolve) => {
        dataReady = resolve;
      });
    }
  } finally {
    stopped = true;
    signalRoom();
    await pump;
    await source.return(undefined);
  }
}

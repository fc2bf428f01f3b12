/**
 * Timers for connection deadlines. Node's setTimeout fires at once (with a warning) beyond
 * 2^31-1 ms, about 24.8 days, and `--idle-timeout 30d` is a valid request: longer delays are
 * waited for in steps.
 */
const MAX_STEP = 2 ** 31 - 1;

/** Calls `fn` once `ms` have passed; returns a function that cancels it. */
export function after(ms: number, fn: () => void): () => void {
  const due = Date.now() + ms;
  let timer: NodeJS.Timeout;
  const arm = () => {
    const left = due - Date.now();
    if (left <= 0) fn();
    else timer = setTimeout(arm, Math.min(left, MAX_STEP));
  };
  timer = setTimeout(arm, Math.min(ms, MAX_STEP));
  return () => clearTimeout(timer);
}

/**
 * Calls `onIdle` once `ms` have passed since the last `touch()` while `busy()` is false; a
 * connection with a request in flight is never idle, however long the request takes. touch()
 * only notes the time (it runs for every request); the timer looks at it when it fires.
 */
export class IdleTimer {
  private last = Date.now();
  private cancel: () => void;

  constructor(
    private readonly ms: number,
    private readonly busy: () => boolean,
    private readonly onIdle: () => void,
  ) {
    this.cancel = after(ms, () => this.check());
  }

  /** Something happened on the connection: the idle period starts again. */
  touch(): void {
    this.last = Date.now();
  }

  stop(): void {
    this.cancel();
  }

  private check(): void {
    if (this.busy()) this.touch();
    const left = this.last + this.ms - Date.now();
    if (left > 0) this.cancel = after(left, () => this.check());
    else this.onIdle();
  }
}

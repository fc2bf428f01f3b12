/**
 * A one-line progress bar (bytes, rate, ETA) for `-p`. It draws only on a terminal: when the
 * stream is not a TTY, every call is a no-op, so commands can call it unconditionally.
 * The rate is measured over the last few seconds (a stalled download shows it at once), and
 * every field has a fixed width so the line does not jump about.
 */
import type { Progress } from '../image/types.js';
import { humanSize } from './common.js';

export interface ProgressOptions {
  /** Where to draw (default process.stderr). */
  stream?: NodeJS.WriteStream;
  /** Set false to draw nothing (e.g. when -p was not given). */
  enabled?: boolean;
  /** Shown before the bar, e.g. the image name. */
  label?: string;
  /** Smallest interval between redraws (default 100 ms). */
  intervalMs?: number;
  /** The clock in milliseconds (tests pass their own). */
  now?: () => number;
}

/** The rate is measured over this window. */
export const RATE_WINDOW_MS = 5000;

export class ProgressBar {
  private readonly stream: NodeJS.WriteStream;
  private readonly active: boolean;
  private readonly label: string;
  private readonly interval: number;
  private readonly clock: () => number;
  /** (time, done) samples covering the last RATE_WINDOW_MS, oldest first. */
  private samples: [number, number][] = [];
  private lastDraw = 0;
  private drawn = false;
  private done = 0;
  private total: number | undefined;

  constructor(opts: ProgressOptions = {}) {
    this.stream = opts.stream ?? process.stderr;
    this.active = (opts.enabled ?? true) && this.stream.isTTY === true;
    this.label = opts.label ?? '';
    this.interval = opts.intervalMs ?? 100;
    this.clock = opts.now ?? (() => performance.now());
  }

  /** The library's progress callback (any phase) drawn on this bar. */
  readonly report = (p: Progress): void => this.update(p.done, p.total);

  /** Records progress; redraws at most every `intervalMs`. `total` undefined: unknown size. */
  update(done: number, total?: number): void {
    this.done = done;
    this.total = total;
    const now = this.clock();
    this.sample(now, done);
    if (!this.active) return;
    if (this.drawn && now - this.lastDraw < this.interval) return;
    this.lastDraw = now;
    this.draw(now);
  }

  /** Removes the bar so that the next output starts on a clean line. */
  finish(): void {
    if (this.active && this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }

  /** Bytes per second over the last RATE_WINDOW_MS (0 until two samples exist). */
  rate(now = this.clock()): number {
    const first = this.samples[0];
    if (!first) return 0;
    const seconds = (now - first[0]) / 1000;
    return seconds > 0 ? Math.max(this.done - first[1], 0) / seconds : 0;
  }

  /** The fields without the bar: label, percent, done / total, rate, ETA (fixed widths). */
  fields(now = this.clock()): string {
    const rate = this.rate(now);
    const parts: string[] = [];
    if (this.label) parts.push(this.label);
    const total = this.total;
    if (total !== undefined && total > 0) {
      const frac = Math.min(this.done / total, 1);
      parts.push(`${(frac * 100).toFixed(0).padStart(3)}%`);
      const t = humanSize(total);
      parts.push(`${humanSize(this.done).padStart(9)} / ${t.padEnd(9)}`);
    } else {
      parts.push(humanSize(this.done).padStart(9));
    }
    parts.push(`${humanSize(Math.round(rate)).padStart(9)}/s`);
    if (total !== undefined && total > 0) {
      // Past 99 hours an estimate means nothing (and would widen the line).
      const left = rate > 0 ? (total - this.done) / rate : Number.POSITIVE_INFINITY;
      const eta = this.done >= total ? '0:00' : left < 100 * 3600 ? formatDuration(left) : '--:--';
      parts.push(`ETA ${eta.padStart(8)}`);
    }
    return parts.join('  ').trimEnd();
  }

  private sample(now: number, done: number): void {
    this.samples.push([now, done]);
    // Keep one sample older than the window, so the rate always spans the whole window.
    while (this.samples.length > 2 && this.samples[1]![0] <= now - RATE_WINDOW_MS)
      this.samples.shift();
    if (this.samples.length > 256) this.samples.splice(1, 1);
  }

  /** The bar's text for the current state (without control characters). */
  line(now = this.clock(), width = this.stream.columns || 80): string {
    const total = this.total;
    const text = this.fields(now);
    const room = width - text.length - 4;
    if (total === undefined || total <= 0 || room < 10)
      return text.slice(0, Math.max(width - 1, 0));
    const barWidth = Math.min(room, 40);
    const fill = Math.round(Math.min(this.done / total, 1) * barWidth);
    return `[${'#'.repeat(fill)}${' '.repeat(barWidth - fill)}]  ${text}`;
  }

  private draw(now: number): void {
    this.stream.write(`\r\x1b[K${this.line(now)}`);
    this.drawn = true;
  }
}

/** Seconds as m:ss or h:mm:ss. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

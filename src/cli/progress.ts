/**
 * A one-line progress bar (bytes, rate, ETA) for `-p`. It draws only on a terminal: when the
 * stream is not a TTY, every call is a no-op, so commands can call it unconditionally.
 */
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
}

export class ProgressBar {
  private readonly stream: NodeJS.WriteStream;
  private readonly active: boolean;
  private readonly label: string;
  private readonly interval: number;
  private readonly started = performance.now();
  private lastDraw = 0;
  private drawn = false;
  private done = 0;
  private total: number | undefined;

  constructor(opts: ProgressOptions = {}) {
    this.stream = opts.stream ?? process.stderr;
    this.active = (opts.enabled ?? true) && this.stream.isTTY === true;
    this.label = opts.label ?? '';
    this.interval = opts.intervalMs ?? 100;
  }

  /** Records progress; redraws at most every `intervalMs`. `total` undefined: unknown size. */
  update(done: number, total?: number): void {
    this.done = done;
    this.total = total;
    if (!this.active) return;
    const now = performance.now();
    if (this.drawn && now - this.lastDraw < this.interval) return;
    this.lastDraw = now;
    this.draw(now);
  }

  /** Removes the bar so that the next output starts on a clean line. */
  finish(): void {
    if (this.active && this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }

  /** The bar's text for the current state (without control characters). */
  line(now = performance.now(), width = this.stream.columns || 80): string {
    const seconds = Math.max((now - this.started) / 1000, 1e-3);
    const rate = this.done / seconds;
    const parts: string[] = [];
    if (this.label) parts.push(this.label);
    const total = this.total;
    if (total !== undefined && total > 0) {
      const frac = Math.min(this.done / total, 1);
      parts.push(`${(frac * 100).toFixed(0).padStart(3)}%`);
      parts.push(`${humanSize(this.done).padStart(9)} / ${humanSize(total)}`);
    } else {
      parts.push(humanSize(this.done).padStart(9));
    }
    parts.push(`${humanSize(Math.round(rate)).padStart(9)}/s`);
    if (total !== undefined && rate > 0 && this.done < total) {
      parts.push(`ETA ${formatDuration((total - this.done) / rate)}`);
    }
    const text = parts.join('  ');
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

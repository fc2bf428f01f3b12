/**
 * Progress of a job made of phases (pull: downloading, converting, hashing) on one terminal
 * line. Phases that run at the same time (the converter following the download) share the
 * line; a phase that ends is left on its own line, so the job leaves one line per phase.
 */
import type { Progress } from '../image/types.js';
import { ProgressBar } from './progress.js';

export interface PhaseProgressOptions {
  stream?: NodeJS.WriteStream;
  enabled?: boolean;
  intervalMs?: number;
  now?: () => number;
}

export class PhaseProgress {
  private readonly stream: NodeJS.WriteStream;
  private readonly active: boolean;
  private readonly interval: number;
  private readonly clock: () => number;
  private readonly bars = new Map<string, ProgressBar>();
  private lastDraw = Number.NEGATIVE_INFINITY;
  private drawn = false;

  constructor(opts: PhaseProgressOptions = {}) {
    this.stream = opts.stream ?? process.stderr;
    this.active = (opts.enabled ?? true) && this.stream.isTTY === true;
    this.interval = opts.intervalMs ?? 100;
    this.clock = opts.now ?? (() => performance.now());
  }

  /** The library's progress callback: one line part per phase (named as PULL_PHASES says). */
  readonly report = (p: Progress): void =>
    this.update(PULL_PHASES[p.phase] ?? p.phase, p.done, p.total);

  update(phase: string, done: number, total: number | undefined): void {
    if (!this.active) return;
    let bar = this.bars.get(phase);
    if (!bar) {
      bar = new ProgressBar({ enabled: false, label: phase.padEnd(11), now: this.clock });
      this.bars.set(phase, bar);
    }
    bar.update(done, total);
    const now = this.clock();
    if (total !== undefined && done >= total) {
      this.bars.delete(phase);
      this.write(`${bar.fields(now)}\n`);
      this.drawn = false;
      if (this.bars.size > 0) this.draw(now);
      return;
    }
    if (now - this.lastDraw >= this.interval) this.draw(now);
  }

  /** The current line (phases at work, joined), cut to the terminal's width. */
  line(now = this.clock()): string {
    const width = this.stream.columns || 80;
    const text = [...this.bars.values()].map((b) => b.fields(now)).join('  |  ');
    return text.slice(0, Math.max(width - 1, 0));
  }

  /** Clears a live line so that the next output starts clean. */
  finish(): void {
    if (this.active && this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
    this.bars.clear();
  }

  private draw(now: number): void {
    this.lastDraw = now;
    this.write(this.line(now));
    this.drawn = true;
  }

  private write(text: string): void {
    this.stream.write(`\r\x1b[K${text}`);
  }
}

/** The phase names pull shows. */
const PULL_PHASES: Record<string, string> = {
  download: 'downloading',
  convert: 'converting',
  hash: 'hashing',
};

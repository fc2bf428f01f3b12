/**
 * Coverage feedback from V8's precise block coverage (the inspector's Profiler), for the
 * guided fuzzer: after each execution, the blocks of diskpipe's own code (dist/src) that ran.
 * Taking the coverage resets the counters, so each take covers one execution.
 */
import { Session } from 'node:inspector/promises';

export class BlockCoverage {
  private readonly session = new Session();
  /** Every block seen so far, as `script:start-end`. */
  readonly seen = new Set<string>();

  async start(): Promise<void> {
    this.session.connect();
    await this.session.post('Profiler.enable');
    await this.session.post('Profiler.startPreciseCoverage', { callCount: true, detailed: true });
    await this.take();
  }

  /** The blocks that ran since the last take; how many of them were never seen before. */
  async take(): Promise<number> {
    const { result } = await this.session.post('Profiler.takePreciseCoverage');
    let fresh = 0;
    for (const script of result) {
      if (!script.url.includes('/dist/src/')) continue;
      const file = script.url.slice(script.url.lastIndexOf('/dist/src/') + 10);
      for (const fn of script.functions) {
        for (const r of fn.ranges) {
          if (r.count === 0) continue;
          const key = `${file}:${r.startOffset}-${r.endOffset}`;
          if (!this.seen.has(key)) {
            this.seen.add(key);
            fresh++;
          }
        }
      }
    }
    return fresh;
  }

  stop(): void {
    this.session.disconnect();
  }
}

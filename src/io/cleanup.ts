/**
 * The one registry of temporary outputs (files and staging directories) that must not outlive
 * the process. Paths are registered before they are created and removed synchronously by the
 * CLI's signal handlers. Only node:fs is imported: src/cli/main.ts loads this module before
 * anything heavy so that its handlers exist from the start.
 */
import { rmSync } from 'node:fs';

const temporaries = new Set<string>();
let committed = false;

/** Registers a temporary file or directory (call before creating it). */
export function registerTemporary(path: string): void {
  temporaries.add(path);
}

/** Forgets a path: it was renamed into place or removed. True if it was registered. */
export function unregisterTemporary(path: string): boolean {
  return temporaries.delete(path);
}

/** Removes every registered path (signal handlers; synchronous on purpose). */
export function removeTemporaries(): void {
  for (const path of temporaries) {
    try {
      rmSync(path, { recursive: true, force: true });
    } catch {
      // already gone, or not ours to remove any more
    }
  }
  temporaries.clear();
}

/**
 * Records that a command's final output is in place (the last rename happened): from then on
 * an interrupting signal must not turn the finished run into a failure.
 */
export function markOutputCommitted(): void {
  committed = true;
}

export function outputCommitted(): boolean {
  return committed;
}

let signalCloser: (() => Promise<void>) | undefined;

/**
 * Registers the one close that a signal must wait for: an image edited in place whose
 * metadata is still in memory (serve --writable on qcow2). A second signal does not wait.
 */
export function setSignalCloser(close: (() => Promise<void>) | undefined): void {
  signalCloser = close;
}

export function takeSignalCloser(): (() => Promise<void>) | undefined {
  const close = signalCloser;
  signalCloser = undefined;
  return close;
}

#!/usr/bin/env node
/**
 * The CLI entry point. Signal handlers come first: loading the commands takes a noticeable
 * time on a busy machine, and a signal in that window must still exit 130/143/129 with
 * temporary files removed. So this module imports only the small cleanup registry and
 * loads everything else afterwards.
 */
import { outputCommitted, removeTemporaries, takeSignalCloser } from '../io/cleanup.js';

const EXIT_STATUS: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };

function onSignal(signal: NodeJS.Signals): void {
  // The final output is already in place: the run succeeded, so finish and say so.
  if (outputCommitted()) return;
  const status = EXIT_STATUS[signal] ?? 2;
  // An in-place edit finishes writing its metadata first (serve --writable on qcow2).
  const close = takeSignalCloser();
  if (close) {
    void close()
      .catch((err: unknown) => {
        process.stderr.write(`diskpipe: ${err instanceof Error ? err.message : String(err)}\n`);
      })
      .finally(() => {
        removeTemporaries();
        process.exit(status);
      });
    return;
  }
  removeTemporaries();
  process.exit(status);
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);

// The version line needs nothing else (a script's `diskpipe --version` stays instant).
const version = await import('./version.js');
if (version.onlyVersion(process.argv.slice(2))) {
  process.stdout.write(await version.versionLine(false));
} else {
  await import('./run.js');
}

#!/usr/bin/env node
/**
 * The CLI entry point. Signal handlers come first: loading the commands takes a noticeable
 * time on a busy machine, and a signal in that window must still exit 130/143/129 with
 * temporary files removed. So this module imports only the small cleanup registry and
 * loads everything else afterwards.
 */
import { outputCommitted, removeTemporaries } from '../io/cleanup.js';

const EXIT_STATUS: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };

function onSignal(signal: NodeJS.Signals): void {
  // The final output is already in place: the run succeeded, so finish and say so.
  if (outputCommitted()) return;
  removeTemporaries();
  process.exit(EXIT_STATUS[signal] ?? 2);
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);

await import('./run.js');

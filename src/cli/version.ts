/**
 * `diskpipe --version`: the version line. Printing it loads this file only (main.ts takes it
 * before the CLI proper); `--version --verbose` also says which system-call layer works, which
 * means loading it (koffi and the system's libc).
 */
import { readFileSync } from 'node:fs';

export const VERSION: string = JSON.parse(
  readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'),
).version;

/** "diskpipe 0.1.0 (node 20.20.2)", and with `verbose` "; system calls: …" inside the brackets. */
export async function versionLine(verbose: boolean): Promise<string> {
  let line = `diskpipe ${VERSION} (node ${process.versions.node}`;
  if (verbose) {
    const native = (await import('../io/native.js')).nativeStatus();
    line += `; system calls: ${native.native ? native.reason : `portable fallbacks, ${native.reason}`}`;
  }
  return `${line})\n`;
}

/** Whether the arguments ask for the plain version line and nothing else. */
export function onlyVersion(args: readonly string[]): boolean {
  return args.length === 1 && (args[0] === '--version' || args[0] === '-V');
}

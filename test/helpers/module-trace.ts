/**
 * Which diskpipe modules a process loads: a preload that registers an ESM resolve hook printing
 * every module URL it resolves to stderr, and the parser of those lines.
 */
import { diskpipe } from './peers.js';

const HOOKS = `data:text/javascript,${encodeURIComponent(
  [
    "import { writeSync } from 'node:fs';",
    'export async function resolve(specifier, context, next) {',
    '  const r = await next(specifier, context);',
    "  writeSync(2, 'MODULE ' + r.url + '\\n');",
    '  return r;',
    '}',
  ].join('\n'),
)}`;

/** For `node --import=…`: registers the hook. */
export const MODULE_TRACE = `data:text/javascript,${encodeURIComponent(
  `import { register } from 'node:module'; register(${JSON.stringify(HOOKS)});`,
)}`;

/** The diskpipe modules (paths under src/) named in a traced run's stderr. */
export function tracedModules(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('MODULE ') && l.includes('/src/'))
    .map((l) => l.slice(l.lastIndexOf('/src/') + 5));
}

/** Runs the CLI traced; returns its status, stderr and the diskpipe modules it loaded. */
export function cliModules(args: string[]): {
  status: number | null;
  stderr: string;
  modules: string[];
} {
  const r = diskpipe(args, { env: { NODE_OPTIONS: `--import=${MODULE_TRACE}` } });
  return { status: r.status, stderr: r.stderr, modules: tracedModules(r.stderr) };
}

/** The CLI's error contract for a refused image: exit 2, nothing on stdout, one line on stderr. */
import assert from 'node:assert/strict';
import { diskpipe } from '../helpers/peers.js';

/** Runs the CLI and checks the error contract; returns the message. */
export function refused(args: string[]): string {
  return checkRefusal(args, diskpipe(args));
}

export function checkRefusal(args: string[], r: ReturnType<typeof diskpipe>): string {
  assert.equal(
    r.status,
    2,
    `diskpipe ${args.join(' ')}: status ${r.status}\n${r.stdout}${r.stderr}`,
  );
  assert.equal(r.stdout, '', 'nothing on stdout');
  assert.match(r.stderr, /^diskpipe: [^\n]+\n$/, `one line on stderr: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /internal error|\bat .+:\d+:\d+/, r.stderr);
  return r.stderr.slice('diskpipe: '.length, -1);
}

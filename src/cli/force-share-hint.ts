/**
 * The library's refusal of an image another program writes says only "stop that program";
 * a command that takes -U adds how to read it anyway. (It was said by every command, and
 * commit, which has no -U, answered the suggestion with "Unknown option '-U'".)
 */
import { DiskpipeError, withMessage } from '../errors.js';
import { isWrittenRefusal } from '../io/qemu-locks.js';

export function withForceShareHint(err: unknown): unknown {
  if (!(err instanceof DiskpipeError) || !isWrittenRefusal(err)) return err;
  return withMessage(err, `${err.message}, or read anyway with -U (--force-share)`);
}

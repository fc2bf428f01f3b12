/**
 * Advice the library attached to an error that names an option (errors.ts withOptionHint) is
 * appended only when the command that failed takes that option: commit was told 'read anyway
 * with -U' and pull 'pick one with --member', and answered each with 'Unknown option'.
 */
import { DiskpipeError, optionHintOf, withMessage } from '../errors.js';
import type { OptionTable } from './options.js';

export function withOptionAdvice(err: unknown, options: OptionTable): unknown {
  const hint = optionHintOf(err);
  if (!hint || !(err instanceof DiskpipeError) || !(hint.option in options)) return err;
  return withMessage(err, `${err.message}${hint.advice}`);
}

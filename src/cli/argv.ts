/**
 * Argument rewrites every command shares, done before a command parses its own flags:
 * common flags given before the command move after it, and qemu-img's `--output=json` means
 * `--json` (scripts written for qemu-img pass it).
 */
import { UsageError } from '../errors.js';
import { COMMON_OPTIONS } from './command.js';
import type { OptionTable } from './options.js';
import { trustOptions } from './shared-options.js';

/** Flags accepted before the command (the trust rule, -q); true when the flag takes a value. */
const COMMON_FLAGS = flagTable({ ...trustOptions(), quiet: COMMON_OPTIONS.quiet });

function flagTable(options: OptionTable): Map<string, boolean> {
  const flags = new Map<string, boolean>();
  for (const [name, spec] of Object.entries(options)) {
    flags.set(`--${name}`, spec.type === 'string');
    if (spec.short !== undefined) flags.set(`-${spec.short}`, spec.type === 'string');
  }
  return flags;
}

/**
 * Splits `[common flags…] COMMAND args…` into the command name and its arguments, the
 * leading common flags placed after them. Returns name undefined when none is given.
 */
export function splitCommand(argv: string[]): { name: string | undefined; args: string[] } {
  const leading: string[] = [];
  let i = 0;
  while (i < argv.length) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const flag = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    const takesValue = COMMON_FLAGS.get(flag);
    if (flag.startsWith('--output')) {
      leading.push(arg);
      if (eq < 0) leading.push(argv[++i] ?? '');
    } else if (takesValue === undefined) {
      break;
    } else {
      leading.push(arg);
      if (takesValue && eq < 0) {
        const value = argv[++i];
        if (value === undefined) throw new UsageError(`option '${flag} <value>' needs a value`);
        leading.push(value);
      }
    }
    i++;
  }
  const name = argv[i];
  // After the command's own arguments (subcommands such as `cache ls` come first), but
  // before a `--` that ends the flags.
  const rest = argv.slice(i + 1);
  const end = rest.indexOf('--');
  const at = end < 0 ? rest.length : end;
  return { name, args: outputAsJson([...rest.slice(0, at), ...leading, ...rest.slice(at)]) };
}

/** `--output=json` / `--output json` become `--json`; `--output=human` is the default. */
export function outputAsJson(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      out.push(...args.slice(i));
      break;
    }
    let value: string | undefined;
    if (arg.startsWith('--output=')) value = arg.slice('--output='.length);
    else if (arg === '--output') value = args[++i];
    else {
      out.push(arg);
      continue;
    }
    if (value === 'json') out.push('--json');
    // Anything else but "human" stays as given, for the command to refuse as an unknown flag.
    else if (value !== 'human')
      out.push(arg.startsWith('--output=') ? arg : `--output=${value ?? ''}`);
  }
  return out;
}

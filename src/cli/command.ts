/**
 * How a CLI command is declared: its synopsis, its option table (which gives both the parser
 * and the `--help` lines), how many operands it takes, and what it runs. Commands with
 * subcommands (`cache ls`, `disk create`) are a group of such commands.
 */
import { parseArgs } from 'node:util';
import { UsageError } from '../errors.js';
import { setQuiet } from './common.js';
import { type HelpText, renderEntry, renderHelp } from './help.js';
import { withOptionAdvice } from './option-hint.js';
import { flag, type Help, helpLines, type OptionTable } from './options.js';

export interface Command {
  readonly name: string;
  /** One-line synopsis, as in DESIGN.md. */
  readonly synopsis: string;
  /** What it does, the first lines of its help (and its line in a group's help). */
  readonly summary: readonly string[];
  readonly help: string;
  /** The options its parser accepts besides COMMON_OPTIONS (a group: none of its own). */
  readonly options: OptionTable;
  /** A group's commands (`cache ls`, `cache rm`…), chosen by the first argument. */
  readonly subcommands?: readonly Command[];
  /** Returns the exit status (0 ok, 1 a negative answer). Throws DiskpipeError on errors. */
  run(argv: string[]): Promise<number>;
}

/** Accepted by every command; `diskpipe --help` lists them once. */
export const COMMON_OPTIONS = {
  help: flag('this help', { short: 'h' }),
  /** qemu-img's quiet mode: no output but errors. */
  quiet: flag('no output but errors', { short: 'q' }),
} as const satisfies OptionTable;

type ParseConfig<T extends OptionTable> = {
  args: string[];
  options: T & typeof COMMON_OPTIONS;
  allowPositionals: true;
  strict: true;
};
/** The option values parseArgs gives for table T. */
export type Values<T extends OptionTable> = ReturnType<typeof parseArgs<ParseConfig<T>>>['values'];

export interface CommandSpec<T extends OptionTable> {
  /** `diskpipe NAME …` or `diskpipe GROUP NAME …`: the synopsis names the command. */
  readonly synopsis: string;
  readonly summary: Help;
  readonly options: T;
  readonly operands?: HelpText['operands'];
  readonly notes?: readonly string[];
  readonly column?: number;
  /** How many operands it takes (max may be Infinity). */
  readonly operandCount: readonly [min: number, max: number];
  /** Rewrites argv before parsing (resize: "-1G" is a size, not a flag). */
  readonly rewrite?: (argv: string[]) => string[];
  run(values: Values<T>, operands: string[]): Promise<number>;
}

export function defineCommand<T extends OptionTable>(spec: CommandSpec<T>): Command {
  const summary = helpLines(spec.summary);
  const [min, max] = spec.operandCount;
  return {
    name: commandName(spec.synopsis),
    synopsis: spec.synopsis,
    summary,
    help: renderHelp({
      summary,
      options: spec.options,
      operands: spec.operands,
      notes: spec.notes,
      column: spec.column,
    }),
    options: spec.options,
    run(argv) {
      const { values, positionals } = parseOptions(spec.rewrite?.(argv) ?? argv, spec.options);
      if (positionals.length < min || positionals.length > max)
        throw new UsageError(`usage: ${spec.synopsis}`);
      return spec.run(values, positionals).catch((err: unknown) => {
        throw withOptionAdvice(err, spec.options);
      });
    },
  };
}

/** The last of the lowercase words that start a synopsis: `diskpipe cache ls [--json]` → ls. */
function commandName(synopsis: string): string {
  const words = synopsis.split(' ');
  const end = words.findIndex((w, i) => i > 0 && !/^[a-z]+$/.test(w));
  return words[(end < 0 ? words.length : end) - 1]!;
}

/** Parses argv strictly; unknown flags and missing values become usage errors. */
export function parseOptions<T extends OptionTable>(
  argv: string[],
  options: T,
): { values: Values<T>; positionals: string[] } {
  let parsed: ReturnType<typeof parseArgs<ParseConfig<T>>>;
  try {
    parsed = parseArgs<ParseConfig<T>>({
      args: argv,
      options: { ...options, ...COMMON_OPTIONS },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify a positional.*$/s, ''));
  }
  if ((parsed.values as { quiet?: boolean }).quiet) setQuiet();
  return parsed;
}

export interface GroupSpec {
  readonly name: string;
  readonly summary: Help;
  readonly subcommands: readonly Command[];
  readonly column?: number;
}

/**
 * A command made of subcommands: `NAME SUB args…`. Its synopsis joins theirs; its help lists
 * each with its summary (a group of one shows that one's help).
 */
export function defineGroup(spec: GroupSpec): Command {
  const prefix = `diskpipe ${spec.name} `;
  const subs = spec.subcommands;
  const synopsis = prefix + subs.map((s) => s.synopsis.slice(prefix.length)).join(' | ');
  const summary = helpLines(spec.summary);
  const column = spec.column ?? 20;
  const only = subs.length === 1 ? subs[0] : undefined;
  const help =
    only?.help ??
    [
      ...summary,
      ...subs.flatMap((s) =>
        renderEntry({ label: s.synopsis.slice(prefix.length), lines: s.summary }, column),
      ),
    ].join('\n');
  const group: Command = {
    name: spec.name,
    synopsis,
    summary,
    help,
    options: {},
    subcommands: subs,
    run(argv) {
      const sub = subcommandOf(group, argv);
      if (!sub) throw new UsageError(`usage: ${synopsis}`);
      return sub.run(argv.slice(1));
    },
  };
  return group;
}

/** The subcommand of `command` that argv starts with (undefined: none, or not a group). */
export function subcommandOf(command: Command, argv: readonly string[]): Command | undefined {
  return command.subcommands?.find((s) => s.name === argv[0]);
}

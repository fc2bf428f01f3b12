/**
 * A command's `--help` text, made from its option table: text before, one entry per option
 * (or per group of options), entries for operands, text after.
 */
import { type Help, type HelpGroup, helpLines, type OptionTable, optionLabel } from './options.js';

export interface HelpText {
  readonly summary: readonly string[];
  readonly options: OptionTable;
  /** Operands worth a word (`SIZE`, `-` for stdin), listed after the options. */
  readonly operands?: Readonly<Record<string, Help>> | undefined;
  readonly notes?: readonly string[] | undefined;
  /** Where descriptions start (default: after the longest short label). */
  readonly column?: number | undefined;
}

/** A help entry: a label (`-f FMT`) and its description lines. */
export interface HelpEntry {
  readonly label: string;
  readonly lines: readonly string[];
}

const INDENT = '  ';
/** Labels longer than this do not set the column; they overflow it. */
const SHORT_LABEL = 20;
const WIDTH = 100;

/** The entries of an option table, in table order; a group is one entry where it starts. */
function optionEntries(options: OptionTable): HelpEntry[] {
  const entries: HelpEntry[] = [];
  const done = new Set<HelpGroup>();
  const all = Object.entries(options);
  for (const [name, spec] of all) {
    const group = spec.group;
    if (group === undefined) {
      entries.push({ label: optionLabel(name, spec), lines: spec.help });
    } else if (!done.has(group)) {
      done.add(group);
      const members = all.filter(([, s]) => s.group === group);
      entries.push({
        label: members.map(([n, s]) => optionLabel(n, s)).join(', '),
        lines: group.help,
      });
    }
  }
  return entries;
}

export function renderHelp(text: HelpText): string {
  const entries = [
    ...optionEntries(text.options),
    ...Object.entries(text.operands ?? {}).map(([label, help]) => ({
      label,
      lines: helpLines(help),
    })),
  ];
  const column = text.column ?? defaultColumn(entries);
  return [
    ...text.summary,
    ...entries.flatMap((e) => renderEntry(e, column)),
    ...(text.notes ?? []),
  ].join('\n');
}

function defaultColumn(entries: HelpEntry[]): number {
  const short = entries.map((e) => e.label.length).filter((n) => n <= SHORT_LABEL);
  return INDENT.length + Math.max(0, ...short) + 3;
}

/** `  label   first line` and the other lines under the first; long labels wrap at commas. */
export function renderEntry({ label, lines }: HelpEntry, column: number): string[] {
  const labelLines = wrapLabel(label);
  const last = labelLines.pop()!;
  const out = labelLines.map((l) => `${INDENT}${l}`);
  const [first, ...rest] = lines;
  const under = rest.map((l) => `${' '.repeat(column)}${l}`);
  if (first === undefined) return [...out, `${INDENT}${last}`];
  const head = `${INDENT}${last}`;
  if (head.length + 2 <= column) return [...out, head.padEnd(column) + first, ...under];
  if (head.length + 2 + first.length <= WIDTH) return [...out, `${head}  ${first}`, ...under];
  return [...out, head, `${' '.repeat(column)}${first}`, ...under];
}

/** A label too long for one line (a group of options) is cut after its commas. */
function wrapLabel(label: string): string[] {
  const out: string[] = [];
  let line = '';
  for (const part of label.split(', ')) {
    const next = line === '' ? part : `${line}, ${part}`;
    if (next.length > WIDTH - 24 && line !== '') {
      out.push(`${line},`);
      line = part;
    } else line = next;
  }
  out.push(line);
  return out;
}

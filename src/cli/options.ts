/**
 * One table entry per command-line option: what node:util parseArgs needs to parse it and
 * what `--help` says about it, so the parser and the help text cannot disagree.
 */

/** Help text: one line, or lines of which the first stands beside the flag. */
export type Help = string | readonly string[];

/** Options that `--help` lists on one line together (the trust rule, the source options). */
export interface HelpGroup {
  readonly help: readonly string[];
}

export interface OptionSpec {
  readonly type: 'boolean' | 'string';
  readonly short?: string;
  readonly multiple?: boolean;
  /** The value's name in `--help` (FMT, SIZE, DIR). */
  readonly arg?: string;
  /** How `--help` names the option when `-s ARG` or `--name ARG` would not do. */
  readonly label?: string;
  readonly help: readonly string[];
  readonly group?: HelpGroup;
}

export type OptionTable = Readonly<Record<string, OptionSpec>>;

/** A spec whose parsed value type parseArgs can tell (no `multiple?: boolean` left open). */
type Spec<T extends OptionSpec['type']> = Omit<OptionSpec, 'type' | 'multiple'> & {
  readonly type: T;
};

interface Naming {
  short?: string;
  label?: string;
}

/** Help text as its lines. */
export function helpLines(help: Help): readonly string[] {
  return typeof help === 'string' ? [help] : help;
}

/** A boolean flag. */
export function flag(help: Help, naming: Naming = {}): Spec<'boolean'> {
  return { type: 'boolean', help: helpLines(help), ...naming };
}

/** An option that takes a value (the last one given wins). */
export function value(arg: string, help: Help, naming: Naming = {}): Spec<'string'> {
  return { type: 'string', arg, help: helpLines(help), ...naming };
}

/** A repeatable option that takes a value (all values, in order). */
export function list(
  arg: string,
  help: Help,
  naming: Naming = {},
): Spec<'string'> & { readonly multiple: true } {
  return { type: 'string', multiple: true, arg, help: helpLines(help), ...naming };
}

/** The same options, listed by `--help` on one line with `help`. */
export function grouped<T extends OptionTable>(help: Help, options: T): T {
  const group: HelpGroup = { help: helpLines(help) };
  const out: Record<string, OptionSpec> = {};
  for (const [name, spec] of Object.entries(options)) out[name] = { ...spec, help: [], group };
  return out as T;
}

/** How `--help` names an option: its label, else `-s ARG` or `--name ARG`. */
export function optionLabel(name: string, spec: OptionSpec): string {
  if (spec.label !== undefined) return spec.label;
  const flagName = spec.short !== undefined ? `-${spec.short}` : `--${name}`;
  return spec.arg !== undefined ? `${flagName} ${spec.arg}` : flagName;
}

/**
 * Every command's --help lists exactly the options its parser accepts: each flag the help text
 * names parses (with a value where the help shows one), and each option of the parser is named
 * by the help. The flags are read from the printed help text, not from the option table.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { outputAsJson } from '../../src/cli/argv.js';
import { COMMON_OPTIONS, type Command, parseOptions } from '../../src/cli/command.js';
import { allCommands } from '../../src/cli/commands/index.js';
import type { OptionSpec } from '../../src/cli/options.js';
import { UsageError } from '../../src/errors.js';
import { diskpipe } from '../helpers/peers.js';

/** A flag as the help names it: `-f FMT` → { flag: '-f', value: true }. */
interface HelpFlag {
  flag: string;
  value: boolean;
}

/** The flags in the label column of a help text (lines `  -x ARG   description`). */
export function helpFlags(help: string): HelpFlag[] {
  const flags: HelpFlag[] = [];
  for (const line of help.split('\n')) {
    const label = /^ {2}(-\S.*?)(?: {2,}|$)/.exec(line)?.[1];
    if (label === undefined) continue;
    for (const item of label.split(/,\s*/)) {
      const [flag, arg] = item.split(' ');
      if (!flag || !/^--?[A-Za-z]/.test(flag)) continue; // `-` for stdin is an operand
      flags.push({ flag, value: arg !== undefined || flag.includes('=') });
    }
  }
  return flags;
}

/** Every command that parses options: top-level ones and the subcommands of groups. */
async function leafCommands(): Promise<Command[]> {
  return (await allCommands()).flatMap((c) => (c.subcommands ? [...c.subcommands] : [c]));
}

function names(name: string, spec: OptionSpec): string[] {
  return [`--${name}`, ...(spec.short !== undefined ? [`-${spec.short}`] : [])];
}

test('help: every flag a command lists is accepted by its parser, with or without a value as shown', async () => {
  const leaves = await leafCommands();
  assert.ok(leaves.length >= 20, `${leaves.length} commands`);
  for (const command of leaves) {
    const listed = helpFlags(command.help);
    assert.ok(listed.length > 0, `${command.synopsis}: no options in its help`);
    for (const { flag, value } of listed) {
      const argv = outputAsJson(value && !flag.includes('=') ? [flag, 'VALUE'] : [flag]);
      const parsed = parseOptions(argv, command.options);
      const entry = Object.entries(command.options).find(([n, s]) =>
        names(n, s).includes(argv[0]!),
      );
      assert.ok(entry, `${command.synopsis}: help lists ${flag}, the parser has no such option`);
      const got = (parsed.values as Record<string, unknown>)[entry[0]];
      const expected = value && entry[1].type === 'string' ? 'VALUE' : true;
      assert.deepEqual(
        [got].flat(),
        [expected],
        `${command.synopsis}: help shows ${flag}${value ? ' with' : ' without'} a value`,
      );
      assert.deepEqual(parsed.positionals, [], `${command.synopsis}: ${flag} left an operand`);
    }
  }
});

test('help: every option a command parses is listed in its help', async () => {
  for (const command of await leafCommands()) {
    const listed = new Set(helpFlags(command.help).map((f) => outputAsJson([f.flag])[0]));
    for (const [name, spec] of Object.entries(command.options)) {
      assert.ok(
        names(name, spec).some((n) => listed.has(n)),
        `${command.synopsis}: accepts --${name}, its help does not list it:\n${command.help}`,
      );
    }
    assert.throws(
      () => parseOptions(['--not-an-option'], command.options),
      UsageError,
      `${command.synopsis}: an unlisted flag is refused`,
    );
  }
});

test('help: the options every command takes are listed once, by diskpipe --help', () => {
  const r = diskpipe(['--help']);
  assert.equal(r.status, 0, r.stderr);
  const common = r.stdout.slice(r.stdout.indexOf('common'));
  for (const [name, spec] of Object.entries(COMMON_OPTIONS)) {
    assert.match(common, new RegExp(`(^|[ /,])--${name}\\b`), `--${name}`);
    assert.match(common, new RegExp(`(^|[ /,])-${spec.short}\\b`), `-${spec.short}`);
  }
});

test('help: `diskpipe COMMAND --help` prints the synopsis and the help of that command', async () => {
  for (const argv of [['info'], ['cache', 'prune'], ['disk', 'create']]) {
    const r = diskpipe([...argv, '--help']);
    assert.equal(r.status, 0, r.stderr);
    const commands = await leafCommands();
    const command = commands.find((c) => c.synopsis.startsWith(`diskpipe ${argv.join(' ')} `));
    assert.ok(command, argv.join(' '));
    assert.equal(r.stdout, `usage: ${command.synopsis}\n\n${command.help}\n`);
  }
});

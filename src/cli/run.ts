/** The CLI proper, loaded by main.ts once its signal handlers are installed. */
import { DiskpipeError, UsageError } from '../errors.js';
import { defuseStdioSyncAtExit } from '../io/native.js';
import { splitCommand } from './argv.js';
import { type Command, subcommandOf } from './command.js';
import { allCommands, loadCommand } from './commands/index.js';
import { applyProcessEnvironment } from './env.js';
import { versionLine } from './version.js';

async function usage(): Promise<string> {
  const lines = (await allCommands()).map((c: Command) => `  ${c.synopsis}`);
  return [
    'usage: diskpipe COMMAND [OPTIONS] ...',
    '',
    ...lines,
    '',
    'common (before or after the command): --untrusted, --allow-backing DIR, --cache-dir DIR,',
    '        -q/--quiet (no output but errors), -h/--help, --version [--verbose] (with the',
    '        system-call layer in use); --output=json means --json',
    'sources: --max-staged SIZE, --min-rate SIZE, --min-rate-window SECONDS, --ca-cert FILE,',
    '        --insecure',
    "Run 'diskpipe COMMAND --help' (or 'diskpipe help COMMAND') for a command's options.",
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  await applyProcessEnvironment();
  const { name, args } = splitCommand(argv);
  // `diskpipe help convert` is `diskpipe convert --help` (as git and qemu-img users expect).
  if (name === 'help' && args.length > 0) return main([...args, '--help']);
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(`${await usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(await versionLine(args.includes('--verbose')));
    return 0;
  }
  const command = await loadCommand(name);
  if (!command) throw new UsageError(`unknown command '${name}'; run 'diskpipe --help'`);
  // `cache -q ls`, `disk --cache-dir D create`: common flags before a subcommand move too.
  const rest = command.subcommands ? bySubcommand(args) : args;
  if (rest.includes('-h') || rest.includes('--help')) {
    // `cache ls --help`: the subcommand's own help; `cache --help`: the list of them.
    const shown = subcommandOf(command, rest) ?? command;
    process.stdout.write(`usage: ${shown.synopsis}\n\n${shown.help}\n`);
    return 0;
  }
  return command.run(rest);
}

function bySubcommand(args: string[]): string[] {
  const split = splitCommand(args);
  return split.name === undefined ? split.args : [split.name, ...split.args];
}

function fail(err: unknown): number {
  const debug = process.env.DISKPIPE_DEBUG === '1';
  if (err instanceof DiskpipeError && !debug) {
    process.stderr.write(`diskpipe: ${err.message}\n`);
  } else if (debug) {
    process.stderr.write(`diskpipe: ${(err as Error)?.stack ?? String(err)}\n`);
  } else {
    process.stderr.write(`diskpipe: internal error: ${(err as Error)?.message ?? String(err)}\n`);
  }
  return 2;
}

/** Why stdout could not take the output (a full disk, EIO): the run then failed. */
let outputLost: Error | undefined;
/** The command's exit status, once it has returned. */
let returned: number | undefined;
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  // A closed pipe (diskpipe map | head) is not an error worth a message.
  if (err.code === 'EPIPE') process.exit(0);
  // `info --json x > out.json` on a full disk: the file holds less than was printed.
  if (outputLost) return;
  outputLost = err;
  if (answered(returned)) reportLostOutput();
});

// A message that cannot be written has nowhere else to go; unhandled, the write error would
// end the process with status 1, which is compare's 'different'. The status stays the run's.
process.stderr.on('error', () => {});

/**
 * `check` exits as qemu-img check does, where 2 means a corrupt image: its report that could
 * not be written is 1 there ('check not completed'), after a clean (0) or leaks-only (3) result.
 */
function isCheck(): boolean {
  try {
    return splitCommand(process.argv.slice(2)).name === 'check';
  } catch {
    return false; // a usage error, already reported
  }
}

/** A run that printed its answer (0, or compare's 1) did not get it out: that is an error. */
function answered(code: number | undefined): boolean {
  return isCheck() ? code === 0 || code === 3 : code === 0 || code === 1;
}

function reportLostOutput(): void {
  process.stderr.write(
    `diskpipe: cannot write the output (standard output): ${outputLost?.message}\n`,
  );
  process.exitCode = isCheck() ? 1 : 2;
}

// The native layer's library fsyncs stdout/stderr at exit (a log file's journal commit).
process.once('exit', defuseStdioSyncAtExit);
main(process.argv.slice(2)).then(
  (code) => {
    returned = code;
    process.exitCode = code;
    // A command that failed has said why (convert to stdout names the write error itself).
    if (outputLost && answered(code)) reportLostOutput();
  },
  (err) => {
    process.exitCode = fail(err);
  },
);

/**
 * koffi's native library carries a static destructor that fsyncs the process's stdout and
 * stderr when the process exits (its own log streams write to fds 1 and 2). With either
 * redirected to a regular file (a VM manager's log, `> out.txt`), every command that had loaded
 * koffi ended with an fsync of that file, which on ext4 can wait for a journal commit carrying
 * the command's own output data (0.6 s at the end of a pull was measured). The CLI calls this at
 * 'exit', when everything is written (stdout and stderr writes to files and pipes are
 * synchronous): fds 1 and 2 that name regular files are pointed at /dev/null, where that fsync
 * costs nothing. Not for library use: an application's later 'exit' listeners may still print.
 */
import { closeSync, fstatSync, openSync } from 'node:fs';

export function pointStdioFilesAtNull(dup2: (from: number, to: number) => number): void {
  let devNull: number | undefined;
  try {
    for (const fd of [1, 2]) {
      if (!fstatSync(fd).isFile()) continue;
      devNull ??= openSync('/dev/null', 'w');
      dup2(devNull, fd);
    }
  } catch {
    // Exiting anyway: the fsync then costs what it costs.
  } finally {
    if (devNull !== undefined) closeSync(devNull);
  }
}

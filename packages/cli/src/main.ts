#!/usr/bin/env node
// The `hodei` command: parse the command line, run one command, turn any failure into one line
// on stderr and an exit code (1 refused, 2 unreachable), never a stack trace.
import { CommanderError } from 'commander';
import { buildProgram } from './program.js';
import { ConfigError } from './config.js';
import { CliError } from './errors.js';
import { exitWhenWritten, outputFailed, readerGone, visible } from './output.js';

function report(err: unknown): number {
  // commander has written the help, the version or the usage error already
  if (err instanceof CommanderError) return err.exitCode;
  // the services' words (a problem's detail quotes what was sent) must not drive the terminal
  const paint = (s: string) => visible(s, false);
  if (err instanceof CliError) {
    process.stderr.write(`hodei: ${paint(err.message)}\n`);
    for (const d of err.details) process.stderr.write(`  ${paint(d)}\n`);
    return err.exitCode;
  }
  if (err instanceof ConfigError) {
    process.stderr.write(`hodei: ${err.message}\n`);
    return 1;
  }
  process.stderr.write(`hodei: unexpected error: ${(err as Error)?.message ?? String(err)}\n`);
  return 1;
}

// the reader went away (`hodei logs … | head`), or the disk is full: what is left to print has nowhere to go
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' ? readerGone() : outputFailed(stream, err)));
}

try {
  await buildProgram().parseAsync(process.argv);
} catch (err) {
  process.exitCode = report(err);
}
// Open keep-alive sockets or timers must not keep a finished command alive.
exitWhenWritten(Number(process.exitCode ?? 0));

#!/usr/bin/env node
// The `hodei` command: parse the command line, run one command, turn any failure into one line
// on stderr and an exit code (1 refused, 2 unreachable or a usage error), never a stack trace.
import { CommanderError, type Command } from 'commander';
import { buildProgram, usageHint } from './program.js';
import { ConfigError } from './config.js';
import { CliError, USAGE_EXIT, UsageError } from './errors.js';
import { exitWhenWritten, inline, outputFailed, readerGone, stderr } from './output.js';

function report(err: unknown, command: Command): number {
  // commander has written the help, the version or the usage error already (a command
  // given without its subcommand, `hodei jobs`, is one: the help went to stderr)
  if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : USAGE_EXIT;
  // the services' words (a problem's detail quotes what was sent) must not drive the terminal
  const paint = (s: string) => inline(s, false);
  if (err instanceof CliError) {
    stderr.write(`hodei: ${paint(err.message)}\n`);
    for (const d of err.details) stderr.write(`  ${paint(d)}\n`);
    if (err instanceof UsageError) stderr.write(`${usageHint(command)}\n`);
    return err.exitCode;
  }
  if (err instanceof ConfigError) {
    stderr.write(`hodei: ${err.message}\n`);
    if (!err.usage) return 1;
    stderr.write(`${usageHint(command)}\n`);
    return USAGE_EXIT;
  }
  stderr.write(`hodei: unexpected error: ${(err as Error)?.message ?? String(err)}\n`);
  return 1;
}

// the reader went away (`hodei logs … | head`), or the disk is full: what is left to print has nowhere to go
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' ? readerGone() : outputFailed(stream, err)));
}

const program = buildProgram();
let running: Command = program;
program.hook('preAction', (_program, action) => {
  running = action;
});
try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.exitCode = report(err, running);
}
// Open keep-alive sockets or timers must not keep a finished command alive.
exitWhenWritten(Number(process.exitCode ?? 0));

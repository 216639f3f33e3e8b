// Starting one job process. Kept apart on purpose: spawn() blocks the event loop for a millisecond
// or so, and this is the seam where it can move to a helper process or thread later.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';

export interface SpawnRequest {
  /** Executable, or /bin/sh for commands and scripts without a shebang. */
  file: string;
  args: string[];
  env: Record<string, string>;
  cwd: string | undefined;
}

export type JobProcess = ChildProcessByStdio<null, Readable, Readable>;

/** Own process group (detached), stdin closed, stdout/stderr as raw byte pipes. */
export function spawnJob(req: SpawnRequest): JobProcess {
  return spawn(req.file, req.args, {
    cwd: req.cwd,
    env: req.env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    windowsHide: true,
  });
}

/** `command` runs as `/bin/sh -c <command> sh <args...>`, so $1.. are the job's args. */
export function commandRequest(command: string, args: string[], env: Record<string, string>, cwd: string | undefined): SpawnRequest {
  return { file: '/bin/sh', args: ['-c', command, 'sh', ...args], env, cwd };
}

/** A script file runs by its shebang when it has one, else through /bin/sh. */
export function scriptRequest(path: string, script: string, args: string[], env: Record<string, string>, cwd: string | undefined): SpawnRequest {
  return script.startsWith('#!') ? { file: path, args, env, cwd } : { file: '/bin/sh', args: [path, ...args], env, cwd };
}

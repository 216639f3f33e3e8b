// Finding and killing every process of an execution: its process group, plus any descendant that
// left the group (setsid, double fork) but still carries HODEI_EXECUTION_ID in its environment.
import { readdirSync, readFileSync } from 'node:fs';

/** Pids (not zombies) whose initial environment has HODEI_EXECUTION_ID=<one of ids>. */
export function findExecutionProcesses(executionIds: Iterable<string>): Map<string, number[]> {
  const needles = new Map<string, Buffer>();
  for (const id of executionIds) needles.set(id, Buffer.from(`HODEI_EXECUTION_ID=${id}\0`));
  const found = new Map<string, number[]>();
  if (needles.size === 0) return found;
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return found; // no procfs (not Linux): the process group kill is all we can do
  }
  const self = String(process.pid);
  for (const name of entries) {
    const c = name.charCodeAt(0);
    if (c < 48 || c > 57 || name === self) continue;
    let environ: Buffer;
    try {
      environ = readFileSync(`/proc/${name}/environ`);
    } catch {
      continue; // gone already, or not ours to read
    }
    if (environ.length === 0) continue; // zombies and kernel threads have none
    for (const [id, needle] of needles) {
      if (environ.indexOf(needle) !== -1) {
        const list = found.get(id) ?? [];
        list.push(Number(name));
        found.set(id, list);
      }
    }
  }
  return found;
}

export function signalGroup(pgid: number | undefined, signal: NodeJS.Signals): boolean {
  if (!pgid) return false;
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false; // ESRCH: the group is empty
  }
}

export function signalPids(pids: readonly number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // exited meanwhile
    }
  }
}

/** True while some non-zombie process is in the group. */
export function groupAlive(pgid: number | undefined): boolean {
  if (!pgid) return false;
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

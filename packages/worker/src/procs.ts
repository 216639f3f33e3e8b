// Finding and killing every process of an execution: its process group, plus any descendant that
// left the group (setsid, double fork) but still carries HODEI_EXECUTION_ID in its environment.
import { readdirSync, readFileSync } from 'node:fs';

const needleOf = (executionId: string) => Buffer.from(`HODEI_EXECUTION_ID=${executionId}\0`);

/** Pids (not zombies) whose initial environment has HODEI_EXECUTION_ID=<one of ids>. */
export function findExecutionProcesses(executionIds: Iterable<string>): Map<string, number[]> {
  const needles = new Map<string, Buffer>();
  for (const id of executionIds) needles.set(id, needleOf(id));
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

/** Children of `pid`, forked by any of its threads (empty when it is gone or there is no procfs). */
function childrenOf(pid: number): number[] {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const tid of tasks) {
    let text = '';
    try {
      text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'latin1');
    } catch {
      continue; // the thread ended, or a kernel without CONFIG_PROC_CHILDREN
    }
    for (const c of text.split(' ')) if (c.trim()) out.push(Number(c));
  }
  return out;
}

/**
 * The execution's processes found by parentage, without a scan of /proc: the tree under its main
 * process (a setsid child is still its parent's child), and the orphans its processes left (a
 * double-forked daemon), which are children of the subreaper that spawned the job and still carry
 * the execution's id. A handful of small reads, so a cancel can signal them at once; a process
 * re-parented anywhere else is left to findExecutionProcesses().
 */
export function executionTree(executionId: string, mainPid: number | undefined, subreaper: number | undefined): number[] {
  const needle = needleOf(executionId);
  const roots = mainPid ? [mainPid] : [];
  if (subreaper) {
    for (const pid of childrenOf(subreaper)) {
      if (pid === mainPid) continue;
      try {
        if (readFileSync(`/proc/${pid}/environ`).indexOf(needle) !== -1) roots.push(pid);
      } catch {
        // gone meanwhile
      }
    }
  }
  const seen = new Set<number>();
  for (let pid = roots.pop(); pid !== undefined; pid = roots.pop()) {
    if (seen.has(pid)) continue;
    seen.add(pid);
    roots.push(...childrenOf(pid));
  }
  return [...seen];
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

/** The fields of /proc/<pid>/stat after the command name, its state first; undefined once it is gone. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

function processGroupOf(pid: number): number | undefined {
  const group = statFields(pid)?.[2];
  return group === undefined ? undefined : Number(group);
}

/** The pids not in process group `pgid` (all of them when it is undefined): those its signal missed. */
export function outsideGroup(pids: readonly number[], pgid: number | undefined): number[] {
  return pgid === undefined ? [...pids] : pids.filter((pid) => processGroupOf(pid) !== pgid);
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

/** The process has exited (reaped, or a zombie not reaped yet); false while it runs, or when that cannot be told. */
export function hasExited(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
  return statFields(pid)?.[0] === 'Z';
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

// The folders of executions whose agent was killed (SIGKILL, the OOM killer) before it removed
// them: `hodei-<execution id>-XXXXXX` in HODEI_WORKER_TMPDIR, with the script and the result file.
// Every crash left one per running job, for ever.
import { lstatSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { findExecutionProcesses } from './procs.js';

const FOLDER = /^hodei-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-[A-Za-z0-9]{6}$/;
/** A younger folder may be another agent's between making it and starting its job, or between its
 *  job's exit and reading the result file. */
const MIN_AGE_MS = 60_000;
/** A running agent looks again this often: one restarted at once left folders younger than MIN_AGE_MS. */
export const LEFTOVER_SWEEP_MS = 3600_000;

/**
 * Removes the folders in `tmpDir`, of this user, a minute old or more, of executions that are not
 * `own` (this agent's) and that no process runs (none carries their HODEI_EXECUTION_ID: a job's
 * processes die with a killed agent). Returns the names removed.
 */
export function removeLeftovers(tmpDir: string, own: (executionId: string) => boolean): string[] {
  let names: string[];
  try {
    names = readdirSync(tmpDir);
  } catch {
    return [];
  }
  const uid = process.getuid?.();
  const now = Date.now();
  const candidates = new Map<string, string[]>();
  for (const name of names) {
    const id = FOLDER.exec(name)?.[1];
    if (!id || own(id)) continue;
    let st;
    try {
      st = lstatSync(path.join(tmpDir, name));
    } catch {
      continue;
    }
    if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || now - st.mtimeMs < MIN_AGE_MS) continue;
    candidates.set(id, [...(candidates.get(id) ?? []), name]);
  }
  if (candidates.size === 0) return [];
  const running = findExecutionProcesses(candidates.keys());
  const removed: string[] = [];
  for (const [id, folders] of candidates) {
    if (running.has(id)) continue;
    for (const name of folders) {
      try {
        rmSync(path.join(tmpDir, name), { recursive: true, force: true });
        removed.push(name);
      } catch {
        // not ours to remove after all: left for whoever owns it
      }
    }
  }
  return removed;
}

// What the reaper says of the processes a job left behind when its main process exited.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createLogger, type Logger } from '@hodei/platform';
import { Reaper } from '../src/reaper.js';
import { commandRequest, NATIVE_SPAWNER, ProcessSpawner } from '../src/spawn.js';
import { alive, waitFor } from './harness.js';

const logged: { fields: Record<string, unknown>; msg: string }[] = [];
const note = (fields: Record<string, unknown>, msg: string) => void logged.push({ fields, msg });
const logger = { info: note, warn: note, error: note, debug: () => undefined } as unknown as Logger;
const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

let spawner: ProcessSpawner;
let reaper: Reaper;

beforeAll(async () => {
  spawner = new ProcessSpawner(createLogger('test', 'silent'), [NATIVE_SPAWNER]);
  await spawner.ready;
  reaper = new Reaper(300, logger, () => spawner.subreaper);
});
afterAll(async () => {
  await reaper.close();
  await spawner.close();
});

/** Runs `command` as execution `id` (its leftovers write nowhere); its main process's pid and what it printed. */
async function leaveBehind(id: string, command: string): Promise<{ pgid: number; out: string }> {
  const job = await spawner.spawn(commandRequest(command, [], { ...env, HODEI_EXECUTION_ID: id }, undefined));
  let out = '';
  job.onData((_, chunk) => (out += chunk.toString()));
  expect((await job.exited).alone).toBe(false);
  await job.closed;
  job.destroy();
  return { pgid: job.pid, out: out.trim() };
}

it('names the processes a job left behind, though the group SIGTERM ends them before the scan reads /proc', async () => {
  const id = 'reaper-leftover';
  const { pgid, out } = await leaveBehind(id, 'sleep 30 >/dev/null 2>&1 & echo $!');
  const pid = Number(out);
  reaper.cleanup(id, pgid);
  expect(await waitFor(() => logged.some((l) => l.fields.execution_id === id))).toBe(true);
  // at HEAD: leftover_pids: []
  expect(logged.filter((l) => l.fields.execution_id === id)).toEqual([
    { fields: { execution_id: id, leftover_pids: [pid] }, msg: 'terminating processes the job left behind' },
  ]);
  expect(await waitFor(() => !alive(pid))).toBe(true);
});

it('names the process group when what is left of it no longer carries the execution id', async () => {
  const id = 'reaper-no-id';
  const { pgid, out } = await leaveBehind(id, 'env -i sleep 30 >/dev/null 2>&1 & p=$!; until [ "$(cat /proc/$p/comm)" = sleep ]; do :; done; echo $p');
  reaper.cleanup(id, pgid);
  expect(await waitFor(() => logged.some((l) => l.fields.execution_id === id))).toBe(true);
  expect(logged.filter((l) => l.fields.execution_id === id)).toEqual([
    { fields: { execution_id: id, process_group: pgid }, msg: "terminating the job's process group: its main process exited, some of it did not" },
  ]);
  expect(await waitFor(() => !alive(Number(out)))).toBe(true);
});

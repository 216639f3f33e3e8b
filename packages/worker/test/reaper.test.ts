// What the reaper says of the processes a job left behind when its main process exited.
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createLogger, type Logger } from '@hodei/platform';
import { Reaper } from '../src/reaper.js';
import { commandRequest, ProcessSpawner } from '../src/spawn.js';

const logged: { fields: Record<string, unknown>; msg: string }[] = [];
const note = (fields: Record<string, unknown>, msg: string) => void logged.push({ fields, msg });
const logger = { info: note, warn: note, error: note, debug: () => undefined } as unknown as Logger;
const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

let spawner: ProcessSpawner;
let reaper: Reaper;

beforeAll(async () => {
  spawner = new ProcessSpawner(createLogger('test', 'silent'));
  await spawner.ready;
  reaper = new Reaper(300, logger, () => spawner.subreaper);
});
afterAll(async () => {
  await reaper.close();
  await spawner.close();
});

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

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
  await until(() => logged.some((l) => l.fields.execution_id === id), 'the log line');
  // at HEAD: leftover_pids: []
  expect(logged.filter((l) => l.fields.execution_id === id)).toEqual([
    { fields: { execution_id: id, leftover_pids: [pid] }, msg: 'terminating processes the job left behind' },
  ]);
  await until(() => !existsSync(`/proc/${pid}`), 'the leftover to be gone');
});

it('names the process group when what is left of it no longer carries the execution id', async () => {
  const id = 'reaper-no-id';
  const { pgid, out } = await leaveBehind(id, 'env -i sleep 30 >/dev/null 2>&1 & p=$!; until [ "$(cat /proc/$p/comm)" = sleep ]; do :; done; echo $p');
  reaper.cleanup(id, pgid);
  await until(() => logged.some((l) => l.fields.execution_id === id), 'the log line');
  expect(logged.filter((l) => l.fields.execution_id === id)).toEqual([
    { fields: { execution_id: id, process_group: pgid }, msg: "terminating the job's process group: its main process exited, some of it did not" },
  ]);
  await until(() => !existsSync(`/proc/${out}`), 'the leftover to be gone');
});

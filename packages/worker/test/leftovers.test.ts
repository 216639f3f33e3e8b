// An agent killed (SIGKILL, the OOM killer) leaves the folder of each execution it ran in
// HODEI_WORKER_TMPDIR (`hodei-<execution id>-XXXXXX`: the script, the result file). The next agent
// on that folder removes those of executions no process runs any more, once a minute old.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { newId } from '@hodei/platform';
import { setup, startAgentProcess, waitFor, type AgentProcess } from './harness.js';

let h: Awaited<ReturnType<typeof setup>>;
let dir: string;
const agents: AgentProcess[] = [];
beforeAll(async () => {
  h = await setup();
  dir = mkdtempSync(join(tmpdir(), 'hodei-leftovers-test-'));
});
afterAll(async () => {
  for (const a of agents) a.proc.kill('SIGKILL');
  await h.teardown();
  rmSync(dir, { recursive: true, force: true });
});

const twoMinutesAgo = () => new Date(Date.now() - 120_000);

it('removes the folders an agent killed with SIGKILL left behind, not those of a job still running or of one just made', async () => {
  const firstId = newId();
  const first = startAgentProcess(h.env.natsPrefix, firstId, { HODEI_WORKER_TMPDIR: dir });
  agents.push(first);
  await first.ready;
  const run = await h.assign({ script: '#!/bin/sh\necho started\nsleep 30\n' }, { to: { id: firstId } });
  expect(run.ack.accepted).toBe(true);
  await run.running;
  first.proc.kill('SIGKILL');
  await first.exit;
  const crashed = readdirSync(dir).filter((n) => n.startsWith(`hodei-${run.id}-`));
  expect(crashed).toHaveLength(1);
  expect(readdirSync(join(dir, crashed[0]!))).toContain('script');
  utimesSync(join(dir, crashed[0]!), twoMinutesAgo(), twoMinutesAgo()); // the agent comes back later

  // a job of another agent still running (its process carries HODEI_EXECUTION_ID), and a folder just made
  const runningId = newId();
  const live = folder(`hodei-${runningId}-aB3dE9`, true);
  const sleeper = spawn('sleep', ['30'], { env: { ...process.env, HODEI_EXECUTION_ID: runningId }, stdio: 'ignore' });
  const young = folder(`hodei-${newId()}-Xy12Zz`, false);
  const other = folder('hodei-something-else', true);
  try {
    const second = startAgentProcess(h.env.natsPrefix, newId(), { HODEI_WORKER_TMPDIR: dir });
    agents.push(second);
    await second.ready;
    expect(await waitFor(() => !existsSync(join(dir, crashed[0]!)), 5000)).toBe(true);
    expect(second.stdout()).toContain('removed 1 folder left by executions whose agent was killed');
    expect([live, young, other].map((f) => existsSync(f))).toEqual([true, true, true]);
  } finally {
    sleeper.kill('SIGKILL');
  }
});

function folder(name: string, old: boolean): string {
  const f = join(dir, name);
  mkdirSync(f);
  writeFileSync(join(f, 'script'), 'echo hi\n');
  if (old) utimesSync(f, twoMinutesAgo(), twoMinutesAgo());
  return f;
}

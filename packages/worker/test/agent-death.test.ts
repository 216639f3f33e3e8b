// A worker agent killed with SIGKILL (OOM killer, a crash, `kill -9`) leaves no job running: nobody
// would watch it any more, and the scheduler may run it again on another worker.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '@hodei/platform';
import { alive, setup, startAgentProcess, waitFor } from './harness.js';

let h: Awaited<ReturnType<typeof setup>>;
/** Where the jobs write their pids; removed with everything in it after the file. */
let scratch = '';
/** Processes a failed test may have left running. */
const leftovers = new Set<number>();
/** Agents a failed test may have left running. */
const agents: ChildProcess[] = [];
beforeAll(async () => {
  scratch = mkdtempSync(path.join(os.tmpdir(), 'hodei-agent-death-'));
  h = await setup();
});
afterAll(async () => {
  for (const pid of leftovers) if (alive(pid)) process.kill(pid, 'SIGKILL');
  for (const agent of agents) agent.kill('SIGKILL');
  await h.teardown();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

const GRACE_MS = 5000;

function readPids(pidFile: string): Record<string, number> {
  try {
    return Object.fromEntries(
      readFileSync(pidFile, 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split(' '))
        .map(([k, v]) => [k!, Number(v)]),
    );
  } catch {
    return {};
  }
}

/** Names the processes of a job wrote to `file` on SIGTERM, once each. */
function termed(file: string): string[] {
  try {
    return [...new Set(readFileSync(file, 'utf8').trim().split('\n'))].sort();
  } catch {
    return [];
  }
}

describe('an agent killed with SIGKILL', () => {
  it('takes its jobs with it: SIGTERM to the shell, a background child, a setsid child and a double-forked daemon, and SIGKILL after the grace to one that carries on after SIGTERM', async () => {
    const id = newId();
    const agent = startAgentProcess(h.env.natsPrefix, id, { HODEI_KILL_GRACE_MS: String(GRACE_MS) });
    agents.push(agent.proc);
    await agent.ready;
    const pidFile = path.join(scratch, `pids-${newId()}`);
    const terms = `${pidFile}.term`;
    // a process that writes its pid, and its name to `terms` when SIGTERM reaches it (then exits)
    const polite = (name: string) => `sh -c 'trap "echo ${name} >> ${terms}; exit 0" TERM; echo "${name} $$" >> ${pidFile}; while :; do sleep 0.1; done'`;
    const command = [
      `trap 'echo shell >> ${terms}; exit 0' TERM`,
      `${polite('bg')} &`,
      `setsid ${polite('setsid')} > /dev/null 2>&1 &`,
      `( ( ${polite('daemon')} < /dev/null > /dev/null 2>&1 & ) & )`,
      `sh -c 'trap "echo stubborn >> ${terms}" TERM; echo "stubborn $$" >> ${pidFile}; while :; do sleep 0.1; done' &`,
      `echo "shell $$" >> ${pidFile}`,
      'wait',
    ].join('\n');
    const second = path.join(scratch, `pids-${newId()}`);
    const runs = [
      await h.assign({ command }, { to: { id } }),
      await h.assign({ command: `trap 'echo other >> ${terms}; exit 0' TERM; echo "other $$" >> ${second}; while :; do sleep 0.1; done` }, { to: { id } }),
    ];
    for (const run of runs) expect(run.ack.accepted).toBe(true);
    const names = ['bg', 'daemon', 'setsid', 'shell', 'stubborn'];
    expect(await waitFor(() => names.every((n) => readPids(pidFile)[n]) && readPids(second).other !== undefined, 5000)).toBe(true);
    const pids = { ...readPids(pidFile), ...readPids(second) };
    expect(Object.keys(pids).sort()).toEqual([...names, 'other'].sort());
    for (const pid of Object.values(pids)) expect(alive(pid)).toBe(true);

    const killedAt = Date.now();
    agent.proc.kill('SIGKILL');
    await agent.exit;
    const { stubborn, ...polites } = pids;
    // bounds for a loaded machine: what is checked is that SIGTERM reached every process (each
    // wrote its name), where a SIGKILL alone would have left no trace
    expect(await waitFor(() => Object.values(polites).every((p) => !alive(p)), GRACE_MS + 10_000)).toBe(true);
    expect(await waitFor(() => !alive(stubborn!), GRACE_MS + 10_000)).toBe(true);
    expect(termed(terms)).toEqual(['bg', 'daemon', 'other', 'setsid', 'shell', 'stubborn']);
    // it got SIGTERM with the rest and carried on: SIGKILL came once the grace had passed
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(GRACE_MS - 100);
  });

  it('after its spawner process was killed: the next job is started by a new spawner process, and dies with the agent', async () => {
    const id = newId();
    const agent = startAgentProcess(h.env.natsPrefix, id, { HODEI_KILL_GRACE_MS: '1000' });
    agents.push(agent.proc);
    await agent.ready;
    const spawnerOf = (pid: number) => childrenOf(pid).find((c) => readFileSync(`/proc/${c}/cmdline`, 'latin1').includes('spawner'));
    const first = spawnerOf(agent.proc.pid!);
    expect(first).toBeDefined();
    const before = await h.assign({ command: 'sleep 30' }, { to: { id } });
    expect(before.ack.accepted).toBe(true);
    await before.running;
    process.kill(first!, 'SIGKILL');
    expect((await before.final).status).toBe('failed');

    const pidFile = path.join(scratch, `pids-${newId()}`);
    const loop = (name: string) => `sh -c 'echo "${name} $$" >> ${pidFile}; while :; do sleep 0.1; done'`;
    const command = [`${loop('bg')} &`, `setsid ${loop('setsid')} > /dev/null 2>&1 &`, `echo "shell $$" >> ${pidFile}`, 'wait'].join('\n');
    const after = await h.assign({ command }, { to: { id } });
    expect(after.ack.accepted).toBe(true);
    expect(await waitFor(() => Object.keys(readPids(pidFile)).length === 3, 5000)).toBe(true);
    const pids = readPids(pidFile);
    for (const pid of Object.values(pids)) leftovers.add(pid);
    const second = spawnerOf(agent.proc.pid!);
    const parentOfShell = second === undefined ? agent.proc.pid : second;

    agent.proc.kill('SIGKILL');
    await agent.exit;
    expect(await waitFor(() => Object.values(pids).every((p) => !alive(p)), 15_000)).toBe(true);
    // it was started by a spawner process again, not by the agent
    expect(second).not.toBe(first);
    expect(parentOfShell).not.toBe(agent.proc.pid);
  });
});

/** Pids whose parent is `pid`, from /proc. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}


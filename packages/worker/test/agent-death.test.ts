// A worker agent killed with SIGKILL (OOM killer, a crash, `kill -9`) leaves no job running: nobody
// would watch it any more, and the scheduler may run it again on another worker.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '@hodei/platform';
import { alive, setup, startAgentProcess, waitFor } from './harness.js';

let h: Awaited<ReturnType<typeof setup>>;
beforeAll(async () => {
  h = await setup();
});
afterAll(async () => {
  await h.teardown();
});

const GRACE_MS = 3000;

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

describe('an agent killed with SIGKILL', () => {
  it('takes its jobs with it: the shell, a background child, a setsid child, a double-forked daemon, and after the grace one that ignores SIGTERM', async () => {
    const id = newId();
    const agent = startAgentProcess(h.env.natsPrefix, id, { HODEI_KILL_GRACE_MS: String(GRACE_MS) });
    await agent.ready;
    const pidFile = path.join(os.tmpdir(), `hodei-pids-${newId()}`);
    const command = [
      `sleep 60 & echo "bg $!" >> ${pidFile}`,
      `setsid sleep 60 > /dev/null 2>&1 & echo "setsid $!" >> ${pidFile}`,
      `( ( sleep 60 < /dev/null > /dev/null 2>&1 & echo "daemon $!" >> ${pidFile} ) & )`,
      `sh -c 'trap "" TERM; echo "stubborn $$" >> ${pidFile}; while :; do sleep 0.1; done' &`,
      `echo "shell $$" >> ${pidFile}`,
      'wait',
    ].join('\n');
    const second = path.join(os.tmpdir(), `hodei-pids-${newId()}`);
    const runs = [
      await h.assign({ command }, { to: { id } }),
      await h.assign({ command: `echo "other $$" >> ${second}; exec sleep 60` }, { to: { id } }),
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
    const { stubborn, ...polite } = pids;
    // SIGTERM reaches them at once: gone well before SIGKILL could have been sent
    expect(await waitFor(() => Object.values(polite).every((p) => !alive(p)), GRACE_MS - 1000)).toBe(true);
    expect(Date.now() - killedAt).toBeLessThan(GRACE_MS);
    expect(await waitFor(() => !alive(stubborn!), GRACE_MS + 5000)).toBe(true);
    // it got SIGTERM with the rest and ignored it: SIGKILL came once the grace had passed
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(GRACE_MS - 100);
  });
});

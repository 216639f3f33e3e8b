// The standalone agent's Prometheus endpoint (HODEI_WORKER_METRICS_PORT): off by default, and
// counting what the agent does when on.
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '@hodei/platform';
import { listeningPorts, setup, startAgentProcess } from './harness.js';

let h: Awaited<ReturnType<typeof setup>>;
const procs: ChildProcess[] = [];
beforeAll(async () => {
  h = await setup();
});
afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await h.teardown();
});

function startAgent(id: string, extra: Record<string, string>) {
  const agent = startAgentProcess(h.env.natsPrefix, id, { HODEI_WORKER_SLOTS: '2', ...extra });
  procs.push(agent.proc);
  return agent;
}

/** The port the agent logged it serves /metrics on (it was told port 0: any free one). */
function metricsPortLogged(stdout: string): number {
  const line = stdout.split('\n').find((l) => l.includes('"metrics on /metrics"'));
  if (!line) throw new Error(`the agent did not log its metrics port; it wrote:\n${stdout}`);
  return (JSON.parse(line) as { port: number }).port;
}

const sample = (text: string, series: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

describe('worker /metrics', () => {
  it('serves hodei_worker_* metrics on HODEI_WORKER_METRICS_PORT and counts assignments (a re-sent one once) and outcomes', async () => {
    const id = newId();
    const agent = startAgent(id, { HODEI_WORKER_METRICS_PORT: '0', HODEI_WORKER_METRICS_HOST: '127.0.0.1' });
    await agent.ready;
    const port = metricsPortLogged(agent.stdout());
    expect(listeningPorts(agent.proc.pid!)).toEqual([port]);
    const url = `http://127.0.0.1:${port}/metrics`;
    const before = await fetch(url);
    expect(before.status).toBe(200);
    expect(before.headers.get('content-type')).toContain('text/plain');
    const text0 = await before.text();
    expect(sample(text0, 'hodei_worker_capacity_slots{service="worker"}')).toBe(2);
    expect(sample(text0, 'hodei_worker_executions_running{service="worker"}')).toBe(0);
    // every series there from the start, so that rate() and increase() count the first of each
    for (const outcome of ['accepted', 'refused']) expect(sample(text0, `hodei_worker_assignments_total{outcome="${outcome}",service="worker"}`)).toBe(0);
    for (const status of ['completed', 'failed', 'timed_out', 'cancelled']) expect(sample(text0, `hodei_worker_executions_finished_total{status="${status}",service="worker"}`)).toBe(0);
    expect(text0).toContain('hodei_process_cpu_seconds_total');
    expect((await fetch(`http://127.0.0.1:${port}/other`)).status).toBe(404);

    const ok = await h.assign({ command: 'sleep 0.5; echo fine' }, { to: { id } });
    const resent = await h.assign({ command: 'sleep 0.5; echo fine' }, { to: { id }, id: ok.id }); // the scheduler did not hear the ack
    expect(resent.ack.accepted).toBe(true);
    expect((await ok.final).status).toBe('completed');
    const bad = await h.assign({ command: 'exit 3' }, { to: { id } });
    expect((await bad.final).status).toBe('failed');

    // the counters move once the final status is out: read until they have, within a deadline
    const finishedSeries = 'hodei_worker_executions_finished_total{status="failed",service="worker"}';
    let text = '';
    for (const deadline = Date.now() + 5000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
      text = await (await fetch(url)).text();
      if (sample(text, finishedSeries) === 1) break;
    }
    expect(sample(text, 'hodei_worker_assignments_total{outcome="accepted",service="worker"}')).toBe(2);
    expect(sample(text, 'hodei_worker_executions_finished_total{status="completed",service="worker"}')).toBe(1);
    expect(sample(text, 'hodei_worker_executions_finished_total{status="failed",service="worker"}')).toBe(1);

    agent.proc.kill('SIGTERM');
    expect(await agent.exit).toBe(0);
  });

  it('is off by default', async () => {
    const agent = startAgent(newId(), {});
    await agent.ready;
    expect(listeningPorts(agent.proc.pid!)).toEqual([]);
    expect(agent.stdout()).not.toContain('metrics on /metrics');
    agent.proc.kill('SIGTERM');
    expect(await agent.exit).toBe(0);
  });
});

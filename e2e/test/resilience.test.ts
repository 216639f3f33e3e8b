// NATS and Postgres restarted while jobs run: the services recover and nothing accepted is lost.
// Both servers are this file's own (a private nats-server and a private PostgreSQL cluster), so
// killing them touches no one else.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findNatsServer, findPostgresBin, startPrivateNats, startPrivatePostgres } from '../src/private-servers.js';
import { call, eventually } from '../src/http.js';
import { SERVICE_NAMES, startStack, type Stack } from '../src/stack.js';

const natsBin = findNatsServer();
const pgBin = findPostgresBin();
let stack: Stack;
let nats: Awaited<ReturnType<typeof startPrivateNats>> | undefined;
let pgServer: Awaited<ReturnType<typeof startPrivatePostgres>> | undefined;
let failed = false;
const wm = (m: string, p: string, b?: unknown) => call(stack.urls['worker-manager'], m, p, b);

const LINES = 40;
/** Written to by the job submitted during the NATS outage, each time it runs. */
const outageMarker = join(tmpdir(), `hodei-e2e-outage-${process.pid}`);
// ~4 s of output, one line every 100 ms
const COUNTING = `for i in $(seq 1 ${LINES}); do echo line-$i; sleep 0.1; done`;

const finished = (id: string, timeoutMs = 60_000) =>
  eventually(async () => {
    const r = await wm('GET', `/api/v1/executions/${id}`);
    return ['completed', 'failed', 'cancelled', 'timed_out', 'lost'].includes(r.body?.status) ? r.body : undefined;
  }, timeoutMs, `execution ${id} to finish`, 250);

const storedLines = async (id: string) => ((await wm('GET', `/api/v1/executions/${id}/logs`)).body?.lines ?? []) as { seq: number; line: string }[];

async function allHealthy(): Promise<void> {
  await eventually(async () => {
    const codes = await Promise.all(SERVICE_NAMES.map((s) => fetch(`${stack.urls[s]}/health`).then((r) => r.status, () => 0)));
    return codes.every((c) => c === 200) ? true : undefined;
  }, 60_000, 'every service healthy again', 250);
}

function expectEveryLine(lines: { seq: number; line: string }[]): void {
  expect(lines.map((l) => l.seq)).toEqual(Array.from({ length: LINES }, (_, i) => i + 1));
  expect(lines.map((l) => l.line)).toEqual(Array.from({ length: LINES }, (_, i) => `line-${i + 1}`));
}

beforeAll(async () => {
  if (!natsBin) throw new Error('nats-server is not on PATH (nor in /usr/sbin, /usr/local/bin): install it to run this file');
  if (!pgBin) throw new Error('no PostgreSQL initdb/pg_ctl under /usr/lib/postgresql/{15,16,17}/bin: install PostgreSQL to run this file');
  nats = await startPrivateNats(natsBin);
  pgServer = await startPrivatePostgres(pgBin);
  stack = await startStack({
    databaseUrl: pgServer.url,
    natsUrl: nats.url,
    // a worker kills its jobs when cut off from NATS for 3 heartbeats, and the scheduler calls it
    // lost after 3 missed ones: 15 s, room for the outage (a request NATS does not confirm holds it 2 s)
    env: { HODEI_HEARTBEAT_INTERVAL_MS: '5000' },
  });
  await stack.startWorker({ name: 'e2e-resilience', slots: 4 });
});

afterAll(async () => {
  if (failed && stack) process.stderr.write(`${stack.logTail(20)}\n`);
  await nats?.start().catch(() => undefined); // stop() deletes the streams through it
  await stack?.stop();
  await nats?.stop();
  await pgServer?.stop();
  rmSync(outageMarker, { force: true });
});

describe('infrastructure restarts', () => {
  it('NATS killed and restarted mid-job: every log line arrives, the job completes; a job submitted during the outage is refused with 503 and never runs, or (NATS gone while it was being sent) taken and run once', async (ctx) => {
    ctx.onTestFailed(() => void (failed = true));
    const ex = await wm('POST', '/api/v1/execute', { name: 'e2e-nats-restart', command: COUNTING });
    expect(ex.status).toBe(202);
    await eventually(async () => ((await storedLines(ex.body.id)).length >= 5 ? true : undefined), 30_000, 'the first lines stored');

    await nats!.kill('SIGKILL');
    // refused at once when worker-manager already knows its connection is down; when the disconnect
    // is not noticed yet, the publish gets no acknowledgement: NATS may have it, so the execution is
    // kept (202) and sent again once NATS is back, and runs once
    const during = await wm('POST', '/api/v1/execute', { name: 'e2e-during-nats-outage', command: `echo ran >> ${outageMarker}` });
    expect([202, 503]).toContain(during.status);
    if (during.status === 503) {
      expect(during.headers.get('content-type') ?? '').toMatch(/problem\+json/);
      expect(during.body.detail).toMatch(/^the message bus (did not accept the execution \(.*\); |\(NATS\) is unavailable: .*)nothing was done, try again$/);
    }
    await nats!.start();

    const done = await finished(ex.body.id);
    expect(done.status).toBe('completed');
    expect(done.log_lines).toBe(LINES);
    expectEveryLine(await storedLines(ex.body.id));
    await allHealthy();
    // new work flows as before; the refused job, had its message reached the stream on reconnect,
    // would be ahead of this one and have run by the time this one (1 s long) completes
    const after = await wm('POST', '/api/v1/execute', { name: 'e2e-after-nats', command: 'sleep 1; echo after' });
    expect(after.status).toBe(202);
    expect((await finished(after.body.id)).status).toBe('completed');
    const names = ((await wm('GET', '/api/v1/executions?limit=100')).body as { name: string }[]).map((e) => e.name).sort();
    if (during.status === 503) {
      expect(existsSync(outageMarker)).toBe(false);
      expect(names).toEqual(['e2e-after-nats', 'e2e-nats-restart']);
    } else {
      expect((await finished(during.body.id)).status).toBe('completed');
      expect(readFileSync(outageMarker, 'utf8')).toBe('ran\n');
      expect(names).toEqual(['e2e-after-nats', 'e2e-during-nats-outage', 'e2e-nats-restart']);
    }
  });

  it('Postgres crashed and restarted mid-job: the services recover, no accepted job or log line is lost', async (ctx) => {
    ctx.onTestFailed(() => void (failed = true));
    const first = await wm('POST', '/api/v1/execute', { name: 'e2e-pg-restart', command: COUNTING });
    expect(first.status).toBe(202);
    const queuedBehind = await wm('POST', '/api/v1/execute', { name: 'e2e-pg-second', command: 'echo second; sleep 1; echo second-done' });
    expect(queuedBehind.status).toBe(202);
    await eventually(async () => ((await storedLines(first.body.id)).length >= 5 ? true : undefined), 30_000, 'the first lines stored');

    await pgServer!.crash();
    // while it is down the services say so, in problem+json, and do not die
    const health = await fetch(`${stack.urls['worker-manager']}/health`);
    expect(health.status).toBe(503);
    const refused = await wm('POST', '/api/v1/execute', { name: 'e2e-during-pg-outage', command: 'echo nope' });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('content-type') ?? '').toMatch(/problem\+json/);
    expect(refused.body.detail).toMatch(/unavailable.*; try again$/);
    expect(stack.alive()).toEqual({ orchestrator: true, scheduler: true, 'worker-manager': true });
    await pgServer!.start();
    await allHealthy();

    const done = await finished(first.body.id);
    expect(done.status).toBe('completed');
    expect(done.log_lines).toBe(LINES);
    expectEveryLine(await storedLines(first.body.id));
    const second = await finished(queuedBehind.body.id);
    expect(second.status).toBe('completed');
    expect((await storedLines(queuedBehind.body.id)).map((l) => l.line)).toEqual(['second', 'second-done']);
    const after = await wm('POST', '/api/v1/execute', { name: 'e2e-after-pg', command: 'echo after' });
    expect(after.status).toBe(202);
    expect((await finished(after.body.id)).status).toBe('completed');
  });
});

// A service that stops: what its HTTP clients see. A request under way is answered whole, an event
// stream ends after its last event, and no new connection is taken.
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { startOrchestrator } from '../../../services/orchestrator/src/service.js';
import { createTestEnv } from '../src/index.js';

const env = createTestEnv();
afterAll(() => env.cleanup());

const refused = (url: string) => fetch(`${url}/health`).then(() => false, () => true);

describe('stopping a service', () => {
  it('answers a request under way whole, ends an event stream cleanly, then takes no connection', async () => {
    const svc = await startOrchestrator(env.config('orchestrator'));
    const created = await fetch(`${svc.url}/api/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":"j","command":"true"}' });
    expect(created.status).toBe(201);

    const stream = await fetch(`${svc.url}/api/v1/pipeline-runs/events/stream`);
    expect(stream.status).toBe(200);
    const received = stream.text();

    // a slow request: the jobs table is locked, so the list waits until the lock goes
    const locker = new pg.Client({ connectionString: env.databaseUrl });
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE orchestrator.jobs IN ACCESS EXCLUSIVE MODE');
    const list = fetch(`${svc.url}/api/v1/jobs`).then(async (r) => ({ status: r.status, body: await r.json() }));
    for (;;) {
      const { rows } = await locker.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted');
      if (rows[0]!.n > 0) break;
    }

    const stopped = svc.stop();
    await expect.poll(() => refused(svc.url), { timeout: 5000 }).toBe(true);
    // the stream ended as a stream does, not cut
    await expect(received).resolves.toMatch(/^event: connected\n/);
    // the request under way takes longer than the service's own stop would
    await new Promise((resolve) => setTimeout(resolve, 500));
    await locker.query('COMMIT');
    await locker.end();
    const answer = await list;
    expect([answer.status, answer.body.map((j: { name: string }) => j.name)]).toEqual([200, ['j']]);
    await stopped;
  });
});

// An execution recorded `queued` whose queued event was never published: worker-manager stopped
// between the INSERT and the publish, PostgreSQL failing when an unconfirmed publish is marked to be
// sent again, or the retries loop stopped between claiming a row and publishing it. The row itself
// says when to announce it again (retry_due_at, a grace after it is recorded or claimed), so it
// runs once, a grace later. worker-manager reaches NATS through a relay that can be cut.
import { join } from 'node:path';
import { connectBus, createLogger, createPool, decodeJson, forwardTcp, newId, type Config, type Pool, type RunningService, type TcpForwarder, type TestEnv } from '@hodei/platform';
import type { Execution, ExecutionQueuedEvent } from '@hodei/types';
import type { WorkerHandle } from '@hodei/worker';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { resolveSpec } from '../src/executions.js';
import { startWorkerManager } from '../src/service.js';
import * as store from '../src/store/executions.js';
import { claimDue } from '../src/store/retries.js';
import { call, finishedOn, getExecutionOn } from './helpers.js';
import { runs, startRelayedStack, stopRelayedStack } from './relayed-stack.js';

const LABELS = { t: 'unannounced' };
const GRACE = 3000;

let env: TestEnv;
let sched: RunningService;
let wm: RunningService;
let wmConfig: Config;
let worker: WorkerHandle;
let link: TcpForwarder;
let relayPort: number;
let natsUrl: URL;
let scratch = '';

beforeAll(async () => {
  ({ env, sched, wm, worker, link, relayPort, natsUrl, scratch, wmConfig } = await startRelayedStack('unannounced', LABELS, { announceGraceMs: GRACE }));
}, 60_000);

afterAll(() => stopRelayedStack({ worker, wm, sched, link, env, scratch }), 60_000);

/** Runs `fn` on worker-manager's database while worker-manager is stopped (as after a kill -9:
 *  what it does is what the stopped process left), then starts it again. */
async function whileStopped<T>(fn: (db: Pool) => Promise<T>): Promise<T> {
  await wm.stop();
  const db = createPool(env.databaseUrl, 'worker_manager', createLogger('test', 'silent'), 1);
  try {
    return await fn(db);
  } finally {
    await db.end();
    wm = await startWorkerManager(wmConfig);
  }
}

/** The row POST /execute stores, as worker-manager's execute stores it; its publish never happens. */
function recorded(marker: string): store.NewExecution {
  const spec = resolveSpec({ command: `echo ran >> ${marker}`, labels: LABELS }, null);
  return { id: newId(), job_id: null, name: spec.name, priority: spec.priority, spec, attempt: 1 };
}

it('worker-manager gone between recording an execution and publishing it: once it is back, the execution runs once, a grace after it was recorded, and reads as an ordinary queued execution meanwhile', async () => {
  const marker = join(scratch, 'crash-before-publish');
  const started = performance.now();
  const [row] = await whileStopped((db) => store.insertExecutions(db, [recorded(marker)], GRACE));
  const meanwhile = await getExecutionOn(wm.url, row!.id);
  const metrics = await (await call(wm.url, 'GET', '/metrics')).text();
  const done = await finishedOn(wm.url, row!.id, GRACE + 15_000);
  const ms = performance.now() - started;
  await new Promise((r) => setTimeout(r, 1500)); // a second run would have started by now
  expect({ status: done.status, runs: runs(marker) }).toEqual({ status: 'completed', runs: 1 });
  expect(ms).toBeGreaterThan(GRACE - 500);
  expect(ms).toBeLessThan(GRACE + 5000);
  expect(meanwhile).toMatchObject({ status: 'queued', waiting: null, retry_of: null, attempt: 1 });
  expect(metrics).toMatch(/^hodei_retries_waiting\{[^}]*\} 0$/m);
}, 40_000);

it('PostgreSQL failing when an unconfirmed publish is marked to be sent again: answered 202 all the same (a retried error would queue it twice), and run once, a grace later', async () => {
  const marker = join(scratch, 'db-fails-on-mark');
  const name = `db-fails-${newId()}`;
  // a real refusal by PostgreSQL of the UPDATE that marks it, and of nothing else
  await wm.ctx.db.query(`CREATE FUNCTION refuse_mark() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$`);
  await wm.ctx.db.query(
    `CREATE TRIGGER refuse_mark BEFORE UPDATE ON executions FOR EACH ROW WHEN (NEW.waiting LIKE 'the message bus has not confirmed%') EXECUTE FUNCTION refuse_mark()`,
  );
  let answered: { status: number; body: Execution };
  const started = performance.now();
  try {
    link.hold('both');
    const answer = call(wm.url, 'POST', '/api/v1/execute', { name, command: `echo ran >> ${marker}`, labels: LABELS });
    await new Promise((r) => setTimeout(r, 300));
    await link.close(); // the queued event never reaches NATS
    const res = await answer;
    answered = { status: res.status, body: (await res.json()) as Execution };
  } finally {
    await wm.ctx.db.query('DROP TRIGGER refuse_mark ON executions; DROP FUNCTION refuse_mark()');
  }
  link = await forwardTcp(relayPort, natsUrl);
  const listed = (await (await call(wm.url, 'GET', '/api/v1/executions?limit=100')).json()) as Execution[];
  const mine = listed.filter((e) => e.name === name);
  expect({ answered: answered.status, recorded: mine.map((e) => e.status) }).toEqual({ answered: 202, recorded: ['queued'] });
  expect(answered.body).toMatchObject({ id: mine[0]!.id, status: 'queued', waiting: expect.stringMatching(/^the message bus has not confirmed that it took the execution/) });
  const done = await finishedOn(wm.url, mine[0]!.id, GRACE + 12_000);
  await new Promise((r) => setTimeout(r, 1500));
  expect({ status: done.status, runs: runs(marker) }).toEqual({ status: 'completed', runs: 1 });
  expect(performance.now() - started).toBeLessThan(GRACE + 5000);
}, 40_000);

it('worker-manager gone between claiming a due execution and publishing it: once it is back, the execution comes due again and runs once', async () => {
  const marker = join(scratch, 'crash-after-claim');
  const started = performance.now();
  const id = await whileStopped(async (db) => {
    // recorded and due (its grace over, or a retry's back-off), then claimed by the retries loop,
    // which stopped there
    const [row] = await store.insertExecutions(db, [recorded(marker)], GRACE);
    await db.query('UPDATE executions SET retry_due_at = now() WHERE id = $1', [row!.id]);
    expect((await claimDue(db, 10, GRACE)).map((r) => r.id)).toEqual([row!.id]);
    return row!.id;
  });
  const done = await finishedOn(wm.url, id, GRACE + 15_000);
  const ms = performance.now() - started;
  await new Promise((r) => setTimeout(r, 1500));
  expect({ status: done.status, runs: runs(marker) }).toEqual({ status: 'completed', runs: 1 });
  expect(ms).toBeLessThan(GRACE + 5000);
}, 40_000);

it('executions whose announcement NATS confirmed are not announced again while they wait for a worker past the grace', async () => {
  const bus = await connectBus(natsUrl.toString(), env.natsPrefix, 'unannounced-test', createLogger('test', 'silent'));
  // a plain subscriber sees every publish, also a copy JetStream drops as a duplicate
  const announced = new Map<string, number>();
  const sub = bus.nc.subscribe(bus.subjects.forExecution(null).queued, {
    callback: (_err, m) => {
      const id = (decodeJson(m.data) as ExecutionQueuedEvent).execution_id;
      announced.set(id, (announced.get(id) ?? 0) + 1);
    },
  });
  await bus.nc.flush();
  const ids: string[] = [];
  try {
    for (let i = 0; i < 20; i++) {
      const res = await call(wm.url, 'POST', '/api/v1/execute', { command: 'true', labels: { t: 'no-such-worker' } });
      expect(res.status).toBe(202);
      ids.push(((await res.json()) as Execution).id);
    }
    await new Promise((r) => setTimeout(r, GRACE + 2000));
    expect(ids.map((id) => announced.get(id) ?? 0)).toEqual(ids.map(() => 1));
    expect((await Promise.all(ids.map((id) => getExecutionOn(wm.url, id)))).map((e) => e.status)).toEqual(ids.map(() => 'queued'));
  } finally {
    sub.unsubscribe();
    await bus.nc.close();
    for (const id of ids) await call(wm.url, 'POST', `/api/v1/executions/${id}/cancel`);
  }
}, 30_000);

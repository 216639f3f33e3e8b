// worker-manager tells the workers when log lines wait in the stream faster than it stores them
// (`LogBacklog` on <p>_rpc.logs.backlog), and when it caught up. Here the backlog is one left
// while it was down: 1,500 messages of 10 lines for one execution.
import { connectBus, createLogger, decodeJson, createTestEnv, type Bus, type RunningService, type TestEnv } from '@hodei/platform';
import type { LogBacklog, LogLine } from '@hodei/types';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorkerManager } from '../src/service.js';
import { call, lines, logEvents, openSse, publishLines, publishStatus, until } from './helpers.js';

let env: TestEnv;
let bus: Bus;
let svc: RunningService | undefined;
/** A stream's wait for an ended execution's last lines here (10 s unless set), so that the test of it takes less. */
const FINAL_GRACE = 4000;
/** The consumers' ack wait here (ACK_WAIT_MS, 5 s, unless set): a final status waits a second longer than it for its lines. */
const ACK_WAIT = 2000;

beforeAll(async () => {
  env = createTestEnv();
  bus = await connectBus(process.env.NATS_URL ?? 'nats://127.0.0.1:4222', env.natsPrefix, 'log-backlog-test', createLogger('test', 'silent'));
});
afterAll(async () => {
  await svc?.stop();
  await bus?.nc.close();
  await env?.cleanup();
});

describe('log backlog signal', () => {
  it('says behind while over 600 messages are not stored, then caught up; every line stored in order', async () => {
    const first = await startWorkerManager(env.config('worker-manager'));
    const res = await call(first.url, 'POST', '/api/v1/execute', { command: 'true' });
    expect(res.status).toBe(202);
    const id = ((await res.json()) as { id: string }).id;
    await first.stop();

    const MESSAGES = 1500;
    for (let m = 0; m < MESSAGES; m++) {
      await bus.js.publish(bus.subjects.logs(id), JSON.stringify({ execution_id: id, lines: lines(m * 10 + 1, m * 10 + 10) }));
    }
    const signals: LogBacklog[] = [];
    const sub = bus.nc.subscribe(bus.subjects.logsBacklog, { callback: (_e, m) => signals.push(decodeJson(m.data) as LogBacklog) });
    await bus.nc.flush();

    svc = await startWorkerManager(env.config('worker-manager', { logStreamKeepBytes: 100_000, logFinalGraceMs: FINAL_GRACE, ackWaitMs: ACK_WAIT }));
    const stored = await until(
      async () => {
        const body = (await (await call(svc!.url, 'GET', `/api/v1/executions/${id}/logs?limit=100000`)).json()) as { lines: LogLine[] };
        return body.lines.length === MESSAGES * 10 && body.lines;
      },
      30_000,
      'every line stored',
    );
    expect(stored.map((l) => l.seq)).toEqual(Array.from({ length: MESSAGES * 10 }, (_, i) => i + 1));
    await until(async () => signals.at(-1)?.behind === false, 5000, 'the caught-up signal');
    sub.unsubscribe();

    expect(signals[0]!.behind).toBe(true);
    expect(signals[0]!.pending).toBeGreaterThan(600);
    expect(signals.at(-1)).toEqual({ behind: false, pending: expect.any(Number) });
    expect(signals.at(-1)!.pending).toBeLessThan(300);
    // one 'behind' when it began, then one a second at most while it lasted: not one per message
    expect(signals.filter((s) => s.behind).length).toBeLessThan(40);
  });

  it('over HODEI_LOG_STREAM_KEEP_BYTES, stored lines leave the stream: it keeps what is not in Postgres yet', async () => {
    const messagesInStream = async () => (await bus.jsm.streams.info(bus.subjects.logsStream)).state.messages;
    expect(await messagesInStream()).toBeGreaterThan(0); // the 1,500 of the test above (over 100,000 bytes), all stored
    await until(async () => (await messagesInStream()) === 0, 20_000, 'the stored messages purged');
    const stored = (await (await call(svc!.url, 'GET', '/api/v1/executions?limit=1')).json()) as { log_lines: number }[];
    expect(stored[0]!.log_lines).toBe(15_000);
  });

  it('a live stream whose last lines are late but still coming waits for them before completed', async () => {
    const res = await call(svc!.url, 'POST', '/api/v1/execute', { command: 'true' });
    const id = ((await res.json()) as { id: string }).id;
    const sse = await openSse(`${svc!.url}/api/v1/executions/${id}/logs/stream`);
    await publishLines(bus, id, lines(1, 5));
    await publishStatus(bus, { execution_id: id, status: 'completed', exit_code: 0, last_seq: 10, duration_ms: 5 });
    // lines 6-10 are behind a backlog: some come most of a wait later, after the status is recorded without them
    await until(async () => (await (await call(svc!.url, 'GET', `/api/v1/executions/${id}`)).json()).status === 'completed', 15_000, 'the final status');
    await new Promise((r) => setTimeout(r, FINAL_GRACE * 0.8));
    await publishLines(bus, id, lines(6, 7));
    // the stream's first wait for them (FINAL_GRACE from the status) ends with 6-7 in: it waits again
    await new Promise((r) => setTimeout(r, FINAL_GRACE * 0.7));
    expect(sse.events.some((e) => e.event === 'completed')).toBe(false);
    await publishLines(bus, id, lines(8, 10));
    await sse.waitFor((e) => e.event === 'completed', 15_000);
    expect(logEvents(sse).map((l) => l.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  }, 60_000);
});

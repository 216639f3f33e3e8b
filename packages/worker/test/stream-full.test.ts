// The logs stream is full (worker-manager down, so nothing is stored and purged): the stream
// refuses the worker's publishes, and the worker holds the lines back, says so once, and sends
// every one of them, once, when there is room again. Nothing is dropped, and the final status
// waits for the last line.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { AckPolicy } from '@nats-io/jetstream';
import { connectBus, createLogger, decodeJson, newId } from '@hodei/platform';
import type { LogMessage } from '@hodei/types';
import { setup, startAgentProcess, waitFor, type AgentProcess } from './harness.js';

const MAX_BYTES = 1_000_000;
const LINES = 40_000; // about 3.5 MB of log messages
let h: Awaited<ReturnType<typeof setup>>;
let agent: AgentProcess | undefined;

beforeAll(async () => {
  h = await setup();
});
afterAll(async () => {
  agent?.proc.kill('SIGKILL');
  await h.teardown();
});

it('a full logs stream holds the job\'s lines back on the worker; with room again every line arrives once, then the final status', async () => {
  const { bus } = h;
  // the stream as the services make it with HODEI_LOG_STREAM_MAX_BYTES=1000000
  await (await connectBus(process.env.NATS_URL ?? 'nats://127.0.0.1:4222', h.env.natsPrefix, 'stream-full-test', createLogger('test', 'silent'), { logStreamMaxBytes: MAX_BYTES })).nc.close();
  const workerId = newId();
  agent = startAgentProcess(h.env.natsPrefix, workerId);
  await agent.ready;

  const run = await h.assign({ command: `seq 1 ${LINES} | sed 's/^/line /'` }, { to: { id: workerId } });
  expect(run.ack.accepted).toBe(true);
  expect(await waitFor(() => agent!.stdout().includes('logs stream is full'), 15_000)).toBe(true);
  const full = (await bus.jsm.streams.info(bus.subjects.logsStream)).state;
  expect(full.bytes).toBeLessThanOrEqual(MAX_BYTES);
  await new Promise((r) => setTimeout(r, 1000));
  expect(run.statuses.filter((s) => s.status !== 'running')).toEqual([]); // not over while lines wait

  // worker-manager's part: store (here: collect) what is in the stream, ack, purge it
  await bus.jsm.consumers.add(bus.subjects.logsStream, { durable_name: 'stored', ack_policy: AckPolicy.Explicit });
  const consumer = await bus.js.consumers.get(bus.subjects.logsStream, 'stored');
  const seqs: number[] = [];
  const deadline = Date.now() + 60_000;
  while (seqs.length < LINES && Date.now() < deadline) {
    let last = 0;
    for await (const m of await consumer.fetch({ max_messages: 500, expires: 1000 })) {
      for (const b of (decodeJson(m.data) as LogMessage).batches) {
        if (b.execution_id === run.id) seqs.push(...b.lines.map((l) => l.seq));
      }
      m.ack();
      last = m.seq;
    }
    if (last) await bus.jsm.streams.purge(bus.subjects.logsStream, { seq: last + 1 });
  }
  expect(seqs.length).toBe(LINES);
  expect([...seqs].sort((a, b) => a - b)).toEqual(Array.from({ length: LINES }, (_, i) => i + 1));
  const final = await run.final;
  expect(final).toMatchObject({ status: 'completed', exit_code: 0, last_seq: LINES });
  // said once when it fills and once when it has room (here it fills again while being emptied),
  // not at every refused publish
  const said = (text: string) => agent!.stdout().split(text).length - 1;
  expect(await waitFor(() => said('logs stream has room again') === said('logs stream is full'), 5000)).toBe(true);
  expect(said('logs stream is full')).toBeLessThan(10);
}, 90_000);

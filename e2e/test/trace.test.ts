// One execution is one trace across the three services and the worker, received by a small OTLP
// receiver this test runs. Needs the platform's telemetry preload (packages/platform/dist/telemetry).
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { infra } from '../src/context.js';
import { call, eventually } from '../src/http.js';
import { startOtlpReceiver } from '../src/otlp.js';
import { startStack, TELEMETRY_REGISTER, type Stack } from '../src/stack.js';

let stack: Stack;
let receiver: Awaited<ReturnType<typeof startOtlpReceiver>>;
let failed = false;

beforeAll(async () => {
  if (!existsSync(TELEMETRY_REGISTER)) throw new Error(`${TELEMETRY_REGISTER} is missing: build first (make build)`);
  receiver = await startOtlpReceiver();
  const i = infra();
  stack = await startStack({ databaseUrl: i.databaseUrl, natsUrl: i.natsUrl, otlpEndpoint: receiver.url });
  await stack.startWorker({ name: 'e2e-traced', slots: 1 });
});

afterAll(async () => {
  if (failed && stack) process.stderr.write(`${stack.logTail(20)}\n`);
  await stack?.stop();
  await receiver?.stop();
});

describe('tracing', () => {
  it('an execution is one trace spanning worker-manager, scheduler, worker and orchestrator', async (ctx) => {
    ctx.onTestFailed(() => void (failed = true));
    const wm = stack.urls['worker-manager'];
    const job = await call(stack.urls.orchestrator, 'POST', '/api/v1/jobs', { name: 'e2e-traced', command: 'echo "tp=$TRACEPARENT"' });
    expect(job.status).toBe(201);
    const ex = await call(wm, 'POST', '/api/v1/execute', { job_id: job.body.id });
    expect(ex.status).toBe(202);
    const done = await eventually(async () => {
      const e = (await call(wm, 'GET', `/api/v1/executions/${ex.body.id}`)).body;
      return e?.finished_at ? e : undefined;
    }, 60_000, 'the traced execution to finish');
    expect(done.status).toBe('completed');

    const lines = (await call(wm, 'GET', `/api/v1/executions/${ex.body.id}/logs`)).body.lines.map((l: { line: string }) => l.line);
    const m = /^tp=00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/.exec(lines[0] ?? '');
    expect(m, `the job's TRACEPARENT: ${JSON.stringify(lines)}`).not.toBeNull();
    const traceId = m![1]!;

    const spans = await eventually(async () => {
      const inTrace = receiver.spans.filter((s) => s.traceId === traceId);
      const services = new Set(inTrace.map((s) => s.service));
      return ['worker-manager', 'scheduler', 'orchestrator'].every((s) => services.has(s)) && inTrace.some((s) => s.spanId === m![2]) ? inTrace : undefined;
    }, 60_000, 'spans of the three services in the execution trace', 300);
    // the trace starts at the HTTP request that queued the execution
    const root = spans.find((s) => !s.parentSpanId);
    expect(root?.service).toBe('worker-manager');
    expect(root?.name).toMatch(/POST/);
    // the job's TRACEPARENT is a span of the worker's run, descending from the scheduler's placement
    const run = spans.find((s) => s.spanId === m![2])!;
    const parent = spans.find((s) => s.spanId === run.parentSpanId);
    expect(parent?.service).toBe('scheduler');
  });
});

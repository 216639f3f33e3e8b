// Traces end to end: the three services and a worker run as real processes preloaded with the
// telemetry register (as scripts/start-services.sh and compose start them), exporting OTLP/HTTP JSON
// to a receiver this test runs; one execution must be one trace across all of them.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, serviceAddresses, TELEMETRY_REGISTER, workerOnline, type TestEnv } from '@hodei/platform';
import { loadTelemetryConfig, serviceNameFromScript } from '../src/telemetry/config.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SERVICES = ['orchestrator', 'scheduler', 'worker-manager'] as const;
type Svc = (typeof SERVICES)[number];

interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  /** OTLP status code: 0 unset, 1 ok, 2 error */
  status: number;
  /** its string attributes */
  attributes: Record<string, string>;
}

interface Receiver {
  server: Server;
  url: string;
  spans: ReceivedSpan[];
  requests: () => number;
  /** A collector that takes the export requests and never answers them. */
  hang: boolean;
}

/** A minimal OTLP/HTTP receiver (JSON encoding): POST /v1/traces. */
async function startReceiver(port = 0): Promise<Receiver> {
  const spans: ReceivedSpan[] = [];
  let requests = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests += 1;
      if (receiver.hang) return;
      if (req.method !== 'POST' || req.url !== '/v1/traces' || !String(req.headers['content-type']).includes('json')) {
        res.writeHead(415).end();
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        resourceSpans: {
          resource: { attributes: { key: string; value: { stringValue?: string } }[] };
          scopeSpans: { spans: { traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number; status?: { code?: number }; attributes?: { key: string; value: { stringValue?: string } }[] }[] }[];
        }[];
      };
      for (const rs of body.resourceSpans) {
        const service = rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue ?? '';
        for (const ss of rs.scopeSpans) {
          for (const s of ss.spans) spans.push({ service, traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId ?? '', name: s.name, kind: s.kind, status: s.status?.code ?? 0, attributes: Object.fromEntries((s.attributes ?? []).map((a) => [a.key, a.value.stringValue ?? ''])) });
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const receiver: Receiver = { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans, requests: () => requests, hang: false };
  return receiver;
}

/** Stops the receiver, cutting the requests it holds. */
function closeReceiver(r: Receiver | undefined): Promise<void> {
  if (!r) return Promise.resolve();
  r.server.closeAllConnections();
  return new Promise((resolve) => r.server.close(() => resolve()));
}


async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

function stopProcess(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => p.kill('SIGKILL'), 15_000);
    p.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    p.kill('SIGTERM');
  });
}

describe('telemetry config', () => {
  it('is off without an endpoint and names services after their entry script', () => {
    expect(loadTelemetryConfig({}, ['node', '/app/services/scheduler/dist/main.js'])).toEqual({
      endpoint: undefined,
      serviceName: 'scheduler',
      serviceNameFromEnv: false,
    });
    const on = loadTelemetryConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318', OTEL_SERVICE_NAME: 'wm' }, ['node', 'x.js']);
    expect(on).toEqual({ endpoint: 'http://jaeger:4318', serviceName: 'wm', serviceNameFromEnv: true });
    expect(loadTelemetryConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x:4318', OTEL_SDK_DISABLED: 'true' }).endpoint).toBeUndefined();
    expect(serviceNameFromScript('/w/packages/worker/dist/main.js')).toBe('worker');
    expect(serviceNameFromScript('/tmp/other.js')).toBe('hodei');
  });

  it('starts no SDK when OTEL_EXPORTER_OTLP_ENDPOINT is not set', async () => {
    const { OTEL_EXPORTER_OTLP_ENDPOINT: _a, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: _b, ...env } = process.env;
    const out = await new Promise<string>((resolve, reject) => {
      const p = spawn(process.execPath, ['--import', TELEMETRY_REGISTER, '-e', "console.log(String(Boolean(globalThis[Symbol.for('hodei.telemetry.sdk')])))"], {
        env,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let text = '';
      p.stdout.on('data', (c: Buffer) => (text += c.toString()));
      p.once('error', reject);
      p.once('exit', (code) => (code === 0 ? resolve(text.trim()) : reject(new Error(`exit ${code}`))));
    });
    expect(out).toBe('false');
  });
});

describe('one execution, one trace across the services and the worker', () => {
  let env: TestEnv;
  let receiver: Receiver;
  const procs = new Map<Svc, ChildProcess>();
  const output = new Map<Svc, string>();
  const urls = {} as Record<Svc, string>;
  let base: Record<string, string | undefined>;

  async function startService(svc: Svc): Promise<void> {
    const p = spawn(process.execPath, ['--import', TELEMETRY_REGISTER, `${ROOT}services/${svc}/dist/main.js`], {
      env: base,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    output.set(svc, '');
    const keep = (c: Buffer) => output.set(svc, ((output.get(svc) ?? '') + c.toString()).slice(-4000));
    p.stdout?.on('data', keep);
    p.stderr?.on('data', keep);
    procs.set(svc, p);
    await waitFor(`${svc} /health`, async () => {
      if (p.exitCode !== null) throw new Error(`${svc} exited ${p.exitCode}: ${output.get(svc)}`);
      const r = await fetch(`${urls[svc]}/health`);
      return r.status === 200 ? true : undefined;
    });
  }

  beforeAll(async () => {
    for (const svc of SERVICES) {
      const main = `${ROOT}services/${svc}/dist/main.js`;
      if (!existsSync(main)) throw new Error(`${main} is missing: build first (make build)`);
    }
    if (!existsSync(TELEMETRY_REGISTER)) throw new Error(`${TELEMETRY_REGISTER} is missing: build first (make build)`);
    env = createTestEnv();
    receiver = await startReceiver();
    const { ports } = await serviceAddresses();
    for (const svc of SERVICES) urls[svc] = `http://127.0.0.1:${ports[svc]}`;
    base = {
      // nothing of the caller's own installation (an API token, a heartbeat time-out, OTEL_*)
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(HODEI_|OTEL_)/.test(k))),
      DATABASE_URL: env.databaseUrl,
      NATS_URL: process.env.NATS_URL ?? 'nats://127.0.0.1:4222',
      HODEI_NATS_PREFIX: env.natsPrefix,
      HODEI_ORCHESTRATOR_PORT: String(ports.orchestrator),
      HODEI_SCHEDULER_PORT: String(ports.scheduler),
      HODEI_WORKER_MANAGER_PORT: String(ports['worker-manager']),
      HODEI_ORCHESTRATOR_URL: urls.orchestrator,
      HODEI_SCHEDULER_URL: urls.scheduler,
      HODEI_WORKER_MANAGER_URL: urls['worker-manager'],
      LOG_LEVEL: 'warn',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: '200',
    };
    // one at a time: they share a fresh database, and each creates its own schema
    for (const svc of SERVICES) await startService(svc);
  }, 120_000);

  afterAll(async () => {
    // worker-manager stops the workers it started
    await Promise.all([...procs.values()].map(stopProcess));
    await closeReceiver(receiver);
    await env?.cleanup();
  }, 60_000);

  it('exports spans that share the execution trace id from every process, and the job gets TRACEPARENT', async () => {
    const post = async (url: string, body: unknown) => {
      const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: r.status, body: (await r.json()) as Record<string, unknown> };
    };
    const wm = urls['worker-manager'];
    const job = await post(`${urls.orchestrator}/api/v1/jobs`, { name: 'traced', command: 'echo "tp=$TRACEPARENT"' });
    expect(job.status).toBe(201);
    const worker = await post(`${wm}/api/v1/workers`, { type: 'shell', capacity: { slots: 1, cpu_cores: 1, memory_bytes: 268435456 } });
    expect(worker.status).toBe(201);
    const exec = await post(`${wm}/api/v1/execute`, { job_id: job.body.id });
    expect(exec.status).toBe(202);
    const id = exec.body.id as string;

    const done = await waitFor('the execution to finish', async () => {
      const r = (await (await fetch(`${wm}/api/v1/executions/${id}`)).json()) as { status: string };
      return ['completed', 'failed', 'timed_out', 'cancelled', 'lost'].includes(r.status) ? r : undefined;
    }, 90_000);
    expect(done.status).toBe('completed');

    const logs = (await (await fetch(`${wm}/api/v1/executions/${id}/logs`)).json()) as { lines: { line: string }[] };
    const line = logs.lines.map((l) => l.line).find((l) => l.startsWith('tp='));
    const m = /^tp=00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/.exec(line ?? '');
    expect(m, `job output: ${JSON.stringify(logs.lines)}`).not.toBeNull();
    const traceId = m![1]!;

    // the orchestrator's consumer of execution.finished is the last hop; spans arrive in batches
    const inTrace = await waitFor(
      'spans of every process in the trace',
      () => {
        const spans = receiver.spans.filter((s) => s.traceId === traceId);
        const services = new Set(spans.map((s) => s.service));
        const complete =
          ['worker-manager', 'scheduler', 'hodei-worker', 'orchestrator'].every((s) => services.has(s)) &&
          spans.some((s) => s.service === 'orchestrator' && s.name.includes('orchestrator'));
        return complete ? spans : undefined;
      },
      60_000,
    );

    const by = (service: string, name: string) => inTrace.find((s) => s.service === service && s.name.includes(name));
    // the trace starts at the HTTP request that queued the execution
    const root = inTrace.find((s) => !s.parentSpanId);
    expect(root?.service).toBe('worker-manager');
    expect(root?.name).toMatch(/POST/);
    const place = by('scheduler', 'scheduler place');
    const run = by('hodei-worker', 'worker run');
    expect(place).toBeDefined();
    expect(run).toBeDefined();
    // the worker's run descends from the placement, and the job's TRACEPARENT is the run span
    expect(run!.parentSpanId).toBe(place!.spanId);
    expect(m![2]).toBe(run!.spanId);
    expect(by('worker-manager', 'worker-manager execution.status')).toBeDefined();
    expect(by('orchestrator', 'orchestrator')).toBeDefined();
    // worker-manager read the job from the orchestrator within the request (ServiceClient carries the trace)
    const lookup = inTrace.find((s) => s.service === 'orchestrator' && s.kind === 2 /* SERVER */);
    expect(lookup?.name).toMatch(/^GET/);
    // pg queries are traced too (within a request or consumer span)
    expect(inTrace.some((s) => s.service === 'worker-manager' && /INSERT|SELECT|pg/i.test(s.name))).toBe(true);
    // one tree: every span's parent is in the trace (a parent may be exported a batch after its children)
    const connected = await waitFor('every parent of the trace', () => {
      const spans = receiver.spans.filter((s) => s.traceId === traceId);
      const ids = new Set(spans.map((s) => s.spanId));
      return spans.every((s) => !s.parentSpanId || ids.has(s.parentSpanId)) ? spans : undefined;
    }, 10_000).catch(() => receiver.spans.filter((s) => s.traceId === traceId));
    const ids = new Set(connected.map((s) => s.spanId));
    expect(connected.filter((s) => s.parentSpanId && !ids.has(s.parentSpanId)).map((s) => `${s.service} ${s.name}`)).toEqual([]);
    // a span names only the routes the requests took: Express' router span was named after the
    // first route registered on the API router ('router - /api/v1/workers' in every execute request)
    const routes = connected.filter((s) => s.name.includes('/api/')).map((s) => `${s.service} ${s.name}`);
    expect(new Set(routes)).toEqual(new Set(['worker-manager POST /api/v1/execute', 'orchestrator GET /api/v1/jobs/:id']));
  }, 180_000);

  it('a retry is one trace too: rooted in worker-manager, through the scheduler, the worker and the orchestrator', async () => {
    const wm = urls['worker-manager'];
    const post = async (url: string, body: unknown) => (await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json() as Promise<{ id: string }>;
    await post(`${wm}/api/v1/workers`, { type: 'shell', capacity: { slots: 1, cpu_cores: 1, memory_bytes: 268435456 } });
    const job = await post(`${urls.orchestrator}/api/v1/jobs`, { name: 'retried', command: 'echo "tp=$TRACEPARENT"; exit 1', max_retries: 1, retry_backoff_seconds: 0 });
    await post(`${wm}/api/v1/execute`, { job_id: job.id });
    const retry = await waitFor('the second attempt to fail', async () => {
      const list = (await (await fetch(`${wm}/api/v1/executions?job_id=${job.id}`)).json()) as { id: string; attempt: number; status: string }[];
      return list.find((e) => e.attempt === 2 && e.status === 'failed');
    }, 90_000);
    const logs = (await (await fetch(`${wm}/api/v1/executions/${retry.id}/logs`)).json()) as { lines: { line: string }[] };
    const traceId = /^tp=00-([0-9a-f]{32})-/.exec(logs.lines[0]?.line ?? '')?.[1];
    expect(traceId, `job output: ${JSON.stringify(logs.lines)}`).toBeDefined();
    const inTrace = await waitFor('the retry\'s spans of every process', () => {
      const spans = receiver.spans.filter((s) => s.traceId === traceId);
      const names = spans.map((s) => `${s.service} ${s.name}`);
      const wanted = ['worker-manager worker-manager retry', 'scheduler scheduler place', 'hodei-worker worker run', 'orchestrator orchestrator orchestrator-queued'];
      return wanted.every((w) => names.includes(w)) ? spans : undefined;
    }, 60_000);
    const roots = inTrace.filter((s) => !s.parentSpanId);
    expect(roots.map((s) => `${s.service} ${s.name}`)).toEqual(['worker-manager worker-manager retry']);
  }, 180_000);

  it('why a queued execution waits (no worker has its label) is announced in its trace', async () => {
    const traceId = randomBytes(16).toString('hex');
    const job = (await (await fetch(`${urls.orchestrator}/api/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'unplaceable', command: 'true', labels: { pool: 'nowhere' } }),
    })).json()) as { id: string };
    const res = await fetch(`${urls['worker-manager']}/api/v1/execute`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
      body: JSON.stringify({ job_id: job.id }),
    });
    expect(res.status).toBe(202);
    // the scheduler's announcement, consumed by worker-manager and the orchestrator
    const wanted = ['scheduler scheduler scheduler-queue', 'worker-manager worker-manager execution.status', 'orchestrator orchestrator orchestrator-status'];
    await waitFor('the waiting status consumed in the trace', () => {
      const inTrace = receiver.spans.filter((s) => s.traceId === traceId).map((s) => `${s.service} ${s.name}`);
      return wanted.every((w) => inTrace.includes(w)) ? true : undefined;
    }, 30_000);
  }, 60_000);

  it('each firing of a cron schedule is a trace of its own, not part of the request that created the schedule', async () => {
    const post = async (url: string, body: unknown) => (await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json() as Promise<{ id: string }>;
    await post(`${urls['worker-manager']}/api/v1/workers`, { type: 'shell', capacity: { slots: 2, cpu_cores: 1, memory_bytes: 268435456 } });
    const job = await post(`${urls.orchestrator}/api/v1/jobs`, { name: 'cron-traced', command: 'echo "tp=$TRACEPARENT"' });
    const schedule = await post(`${urls.scheduler}/api/v1/schedules`, { job_id: job.id, cron: '* * * * * *', overlap_policy: 'allow' });
    const wm = urls['worker-manager'];
    const fired = await waitFor('two firings to complete', async () => {
      const list = (await (await fetch(`${wm}/api/v1/executions?job_id=${job.id}&status=completed`)).json()) as { id: string }[];
      return list.length >= 2 ? list.slice(0, 2) : undefined;
    }, 60_000);
    await fetch(`${urls.scheduler}/api/v1/schedules/${schedule.id}`, { method: 'DELETE' });
    const traceIds: string[] = [];
    for (const e of fired) {
      const logs = (await (await fetch(`${wm}/api/v1/executions/${e.id}/logs`)).json()) as { lines: { line: string }[] };
      traceIds.push(/^tp=00-([0-9a-f]{32})-/.exec(logs.lines[0]?.line ?? '')?.[1] ?? `none in ${JSON.stringify(logs.lines)}`);
    }
    expect(new Set(traceIds).size).toBe(2);
    for (const traceId of traceIds) {
      const spans = await waitFor('the firing\'s spans', () => {
        const inTrace = receiver.spans.filter((s) => s.traceId === traceId);
        return inTrace.some((s) => s.name === 'worker run') ? inTrace : undefined;
      });
      const roots = spans.filter((s) => !s.parentSpanId);
      expect(roots.map((s) => `${s.service} ${s.name}`)).toEqual(['scheduler scheduler fire']);
    }
  }, 180_000);

  it('a pipeline run is one trace: each of its jobs runs in the trace of the request that started the run', async () => {
    const post = async (url: string, body: unknown) => (await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json() as Promise<{ id: string; jobs: { id: string; name: string }[] }>;
    await post(`${urls['worker-manager']}/api/v1/workers`, { type: 'shell', capacity: { slots: 1, cpu_cores: 1, memory_bytes: 268435456 } });
    const pipeline = await post(`${urls.orchestrator}/api/v1/pipelines`, {
      name: 'traced-pipeline',
      jobs: [
        { name: 'first', command: 'echo "tp=$TRACEPARENT"' },
        { name: 'second', command: 'echo "tp=$TRACEPARENT"', depends_on: ['first'] },
      ],
    });
    const run = await post(`${urls.orchestrator}/api/v1/pipelines/${pipeline.id}/runs`, {});
    const done = await waitFor('the run to complete', async () => {
      const r = (await (await fetch(`${urls.orchestrator}/api/v1/pipeline-runs/${run.id}`)).json()) as { status: string; jobs: { execution_id: string | null }[] };
      return r.status === 'completed' ? r : undefined;
    }, 90_000);
    const traceIds = new Set<string>();
    for (const j of done.jobs) {
      const logs = (await (await fetch(`${urls['worker-manager']}/api/v1/executions/${j.execution_id}/logs`)).json()) as { lines: { line: string }[] };
      traceIds.add(/^tp=00-([0-9a-f]{32})-/.exec(logs.lines[0]?.line ?? '')?.[1] ?? `none in ${JSON.stringify(logs.lines)}`);
    }
    expect(traceIds.size).toBe(1);
    const [traceId] = [...traceIds];
    const spans = await waitFor('both runs in the trace', () => {
      const inTrace = receiver.spans.filter((s) => s.traceId === traceId);
      return inTrace.filter((s) => s.name === 'worker run').length === 2 ? inTrace : undefined;
    });
    const roots = spans.filter((s) => !s.parentSpanId);
    expect(roots.map((s) => `${s.service} ${s.kind === 2 ? 'server' : s.kind}`)).toEqual(['orchestrator server']);
    expect(roots[0]!.name).toMatch(/^POST/);
  }, 180_000);

  it('a run that fails or times out is an error span; a cancelled one is ended (exported) without being an error', async () => {
    const wm = urls['worker-manager'];
    const post = async (url: string, body: unknown) => (await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json() as Promise<{ id: string }>;
    await post(`${wm}/api/v1/workers`, { type: 'shell', capacity: { slots: 3, cpu_cores: 1, memory_bytes: 268435456 } });
    const runs = {
      failed: await post(`${wm}/api/v1/execute`, { command: 'echo "tp=$TRACEPARENT"; exit 3' }),
      timed_out: await post(`${wm}/api/v1/execute`, { command: 'echo "tp=$TRACEPARENT"; sleep 30', timeout_seconds: 1 }),
      cancelled: await post(`${wm}/api/v1/execute`, { command: 'echo "tp=$TRACEPARENT"; sleep 30' }),
    };
    const traceOf = async (id: string) => {
      const logs = (await (await fetch(`${wm}/api/v1/executions/${id}/logs`)).json()) as { lines: { line: string }[] };
      return /^tp=00-([0-9a-f]{32})-/.exec(logs.lines[0]?.line ?? '')?.[1];
    };
    const cancelTrace = await waitFor('the job to be running', () => traceOf(runs.cancelled.id), 30_000);
    await post(`${wm}/api/v1/executions/${runs.cancelled.id}/cancel`, {});
    for (const [status, { id }] of Object.entries(runs)) {
      await waitFor(`${status}`, async () => ((await (await fetch(`${wm}/api/v1/executions/${id}`)).json()) as { status: string }).status === status || undefined, 30_000);
      const traceId = status === 'cancelled' ? cancelTrace : await traceOf(id);
      const run = await waitFor(`the ${status} run's span`, () => receiver.spans.find((s) => s.traceId === traceId && s.name === 'worker run'), 30_000);
      expect(run.status, status).toBe(status === 'cancelled' ? 0 : 2);
    }
  }, 120_000);

  it("a force-stopped worker still ends and exports its runs' spans", async () => {
    const wm = urls['worker-manager'];
    const post = async (url: string, body: unknown) => (await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json() as Promise<{ id: string }>;
    const worker = await post(`${wm}/api/v1/workers`, { type: 'shell', labels: { pool: 'forced' }, capacity: { slots: 1, cpu_cores: 1, memory_bytes: 268435456 } });
    const exec = await post(`${wm}/api/v1/execute`, { command: 'echo "tp=$TRACEPARENT"; sleep 30', labels: { pool: 'forced' } });
    const traceId = await waitFor('the job to be running', async () => {
      const logs = (await (await fetch(`${wm}/api/v1/executions/${exec.id}/logs`)).json()) as { lines: { line: string }[] };
      return /^tp=00-([0-9a-f]{32})-/.exec(logs.lines[0]?.line ?? '')?.[1];
    }, 30_000);
    expect((await fetch(`${wm}/api/v1/workers/${worker.id}?force=true`, { method: 'DELETE' })).status).toBe(200);
    const run = await waitFor('the run span', () => receiver.spans.find((s) => s.traceId === traceId && s.name === 'worker run'), 20_000);
    expect(run.status).toBe(0);
  }, 60_000);

  it('a firing that fails (its job deleted) is an error span, with its outcome', async () => {
    const post = async (url: string, body: unknown) => (await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json() as Promise<{ id: string }>;
    const job = await post(`${urls.orchestrator}/api/v1/jobs`, { name: 'deleted-before-firing', command: 'true' });
    const schedule = await post(`${urls.scheduler}/api/v1/schedules`, { job_id: job.id, cron: '* * * * * *' });
    expect((await fetch(`${urls.orchestrator}/api/v1/jobs/${job.id}`, { method: 'DELETE' })).status).toBe(204);
    const fire = await waitFor('the failed firing\'s span', () =>
      receiver.spans.find((s) => s.name === 'scheduler fire' && s.attributes['hodei.schedule_id'] === schedule.id && s.attributes['hodei.outcome'] === 'failed'), 30_000);
    expect(fire.status).toBe(2);
    await fetch(`${urls.scheduler}/api/v1/schedules/${schedule.id}`, { method: 'DELETE' });
  }, 60_000);

  it('a collector that takes the spans and never answers, or is not there, slows no execution; spans flow again once it answers', async () => {
    const wm = urls['worker-manager'];
    const post = async (url: string, body: unknown) => (await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json() as Promise<{ id: string }>;
    const worker = await post(`${wm}/api/v1/workers`, { type: 'shell', labels: { pool: 'collector' }, capacity: { slots: 1, cpu_cores: 1, memory_bytes: 268435456 } });
    await workerOnline(urls.scheduler, worker.id, 30_000);
    /** Milliseconds from POST /execute to the final status of each of `n` executions, one after another. */
    const timings = async (n: number) => {
      const ms: number[] = [];
      for (let i = 0; i < n; i++) {
        const started = Date.now();
        const { id } = await post(`${wm}/api/v1/execute`, { command: 'echo "tp=$TRACEPARENT"', labels: { pool: 'collector' } });
        const done = await waitFor('the execution to end', async () => {
          const e = (await (await fetch(`${wm}/api/v1/executions/${id}`)).json()) as { status: string };
          return ['completed', 'failed', 'timed_out', 'cancelled', 'lost'].includes(e.status) ? e : undefined;
        }, 30_000);
        expect(done.status).toBe('completed');
        ms.push(Date.now() - started);
      }
      return ms;
    };
    // a blocked export would cost the SDK's export time-out (10 s) somewhere in the path; an
    // execution takes about 0.2 s here, a few seconds with the other test files running
    const held = receiver.requests();
    const port = Number(new URL(receiver.url).port);
    const spans = receiver.spans;
    receiver.hang = true;
    try {
      expect(Math.max(...(await timings(6)))).toBeLessThan(6000);
      expect(receiver.requests()).toBeGreaterThan(held); // the exports did reach it, and wait there
      await closeReceiver(receiver);
      expect(Math.max(...(await timings(6)))).toBeLessThan(6000);
    } finally {
      // back on the same address (for the tests after this one too)
      await closeReceiver(receiver).catch(() => undefined);
      receiver = await startReceiver(port);
      receiver.spans.push(...spans);
    }
    // the next execution's trace arrives whole
    const { id } = await post(`${wm}/api/v1/execute`, { command: 'echo "tp=$TRACEPARENT"', labels: { pool: 'collector' } });
    const traceId = await waitFor('the job to print its TRACEPARENT', async () => {
      const logs = (await (await fetch(`${wm}/api/v1/executions/${id}/logs`)).json()) as { lines: { line: string }[] };
      return /^tp=00-([0-9a-f]{32})-/.exec(logs.lines[0]?.line ?? '')?.[1];
    }, 30_000);
    await waitFor('its spans from worker-manager, the scheduler and the worker', () => {
      const names = receiver.spans.filter((s) => s.traceId === traceId).map((s) => `${s.service} ${s.name}`);
      return ['worker-manager POST /api/v1/execute', 'scheduler scheduler place', 'hodei-worker worker run'].every((n) => names.includes(n)) || undefined;
    }, 30_000);
  }, 120_000);

  it('an execution that waited through a scheduler killed with SIGKILL is still one trace, from the request to the run', async () => {
    const wm = urls['worker-manager'];
    const post = async (url: string, body: unknown) => (await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json() as Promise<{ id: string; status?: string }>;
    const exec = await post(`${wm}/api/v1/execute`, { command: 'echo "tp=$TRACEPARENT"', labels: { pool: 'after-restart' } });
    await waitFor('the scheduler to say why it waits', async () => ((await (await fetch(`${wm}/api/v1/executions/${exec.id}`)).json()) as { waiting: string | null }).waiting ?? undefined, 30_000);
    const scheduler = procs.get('scheduler')!;
    const gone = new Promise((r) => scheduler.once('exit', r));
    scheduler.kill('SIGKILL');
    await gone;
    await startService('scheduler');
    await post(`${wm}/api/v1/workers`, { type: 'shell', labels: { pool: 'after-restart' }, capacity: { slots: 1, cpu_cores: 1, memory_bytes: 268435456 } });
    const logs = await waitFor('the execution to run', async () => {
      const l = (await (await fetch(`${wm}/api/v1/executions/${exec.id}/logs`)).json()) as { lines: { line: string }[] };
      return l.lines.length ? l.lines : undefined;
    }, 60_000);
    const m = /^tp=00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/.exec(logs[0]!.line);
    expect(m, JSON.stringify(logs)).not.toBeNull();
    const spans = await waitFor('the trace, every parent in it', () => {
      const inTrace = receiver.spans.filter((s) => s.traceId === m![1]);
      const ids = new Set(inTrace.map((s) => s.spanId));
      const whole = inTrace.some((s) => s.name === 'worker run') && inTrace.every((s) => !s.parentSpanId || ids.has(s.parentSpanId));
      return whole ? inTrace : undefined;
    }, 30_000);
    expect(spans.filter((s) => !s.parentSpanId).map((s) => `${s.service} ${s.name}`)).toEqual(['worker-manager POST /api/v1/execute']);
    const run = spans.find((s) => s.name === 'worker run')!;
    expect(run.spanId).toBe(m![2]);
    expect(spans.find((s) => s.spanId === run.parentSpanId)?.name).toBe('scheduler place');
  }, 120_000);
});

// HTTP throughput of the orchestrator next to a bare Express 5 hello-world, measured in one run on
// one machine, so the ratio says what our stack (validation, problem+json, metrics, Postgres) costs.
//
//   pnpm --filter @hodei/bench bench                     orchestrator in-process, throwaway database
//   pnpm --filter @hodei/bench bench -- --url http://127.0.0.1:8080 [--token T]   a running one
//   options: --duration S (10) --connections N (10) --rounds R (2) --json
//
// Targets are measured in turn, R rounds; each keeps its best round, so a burst of other work on
// the machine during one run does not decide the ratio.
//
// The load generator (autocannon) runs in a child process so it never shares an event loop with
// the server it measures.
import { fork } from 'node:child_process';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath, pathToFileURL } from 'node:url';
import autocannon from 'autocannon';
import express from 'express';

const here = dirname(fileURLToPath(import.meta.url));

interface LoadSpec {
  name: string;
  method: 'GET' | 'POST';
  url: string;
  headers: Record<string, string>;
  /** POST bodies: `{{n}}` is replaced by a counter so every created job has its own name. */
  bodyTemplate?: string;
  connections: number;
  durationSeconds: number;
}

interface LoadResult {
  name: string;
  requestsPerSecond: number;
  p50: number;
  p99: number;
  total: number;
  non2xx: number;
  errors: number;
}

// ---- child: one autocannon run, result back over IPC ----------------------------------------
async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  let n = 0;
  const result = await autocannon({
    url: spec.url,
    connections: spec.connections,
    duration: spec.durationSeconds,
    requests: [
      {
        method: spec.method,
        headers: spec.headers,
        setupRequest: (req) =>
          spec.bodyTemplate === undefined ? req : { ...req, body: spec.bodyTemplate.replaceAll('{{n}}', String(++n)) },
      },
    ],
  });
  return {
    name: spec.name,
    requestsPerSecond: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    total: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  };
}

function measure(spec: LoadSpec): Promise<LoadResult> {
  const child = fork(fileURLToPath(import.meta.url), ['--load', JSON.stringify(spec)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolvePromise, reject) => {
    let result: LoadResult | undefined;
    child.on('message', (m) => (result = m as LoadResult));
    child.on('error', reject);
    child.on('exit', (code) => (result ? resolvePromise(result) : reject(new Error(`load generator for ${spec.name} exited with ${code}`))));
  });
}

// ---- parent: targets, runs, report ------------------------------------------------------------
interface Target {
  name: string;
  method: 'GET' | 'POST';
  url: string;
  headers: Record<string, string>;
  bodyTemplate?: string;
}

async function helloWorld(): Promise<{ url: string; close: () => Promise<void> }> {
  const app = express();
  app.get('/hello', (_req, res) => {
    res.json({ hello: 'world' });
  });
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  server.keepAliveTimeout = 65_000;
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hello`,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

interface Orchestrator {
  url: string;
  close: () => Promise<void>;
}

/** The orchestrator built by `pnpm build`, booted on a database and NATS prefix of its own. */
async function inProcessOrchestrator(): Promise<Orchestrator> {
  const { createTestEnv } = await import('@hodei/platform');
  const servicePath = resolve(here, '../services/orchestrator/dist/service.js');
  const mod = (await import(pathToFileURL(servicePath).href).catch((err: unknown) => {
    throw new Error(`cannot load ${servicePath} (run pnpm build first): ${String(err)}`);
  })) as { startOrchestrator: (config: unknown) => Promise<{ url: string; stop: () => Promise<void> }> };
  const env = createTestEnv();
  const svc = await mod.startOrchestrator(env.config('orchestrator'));
  return {
    url: svc.url,
    close: async () => {
      await svc.stop();
      await env.cleanup();
    },
  };
}

const pct = (x: number, base: number) => (base > 0 ? (100 * x) / base : 0);
const fmt = (x: number, digits = 0) => x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      token: { type: 'string' },
      duration: { type: 'string', default: '10' },
      connections: { type: 'string', default: '10' },
      rounds: { type: 'string', default: '2' },
      json: { type: 'boolean', default: false },
      load: { type: 'string' },
    },
  });
  if (values.load) {
    const result = await runLoad(JSON.parse(values.load) as LoadSpec);
    process.send?.(result);
    return;
  }
  const durationSeconds = Number(values.duration);
  const connections = Number(values.connections);
  const rounds = Number(values.rounds);
  if (!(durationSeconds > 0) || !(connections > 0) || !(rounds >= 1)) throw new Error('--duration, --connections and --rounds must be positive numbers');

  const hello = await helloWorld();
  const orch = values.url ? { url: values.url.replace(/\/$/, ''), close: async () => undefined } : await inProcessOrchestrator();
  const auth: Record<string, string> = values.token ? { authorization: `Bearer ${values.token}` } : {};
  const json = { 'content-type': 'application/json', ...auth };
  try {
    // One job to read back, created through the API like any client would.
    const created = await fetch(`${orch.url}/api/v1/jobs`, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ name: 'bench-read', command: 'echo hello', tags: ['bench'] }),
    });
    if (created.status !== 201) throw new Error(`POST /api/v1/jobs answered ${created.status}: ${await created.text()}`);
    const job = (await created.json()) as { id: string };

    const targets: Target[] = [
      { name: 'express hello-world', method: 'GET', url: hello.url, headers: {} },
      { name: 'GET /api/v1/jobs/:id', method: 'GET', url: `${orch.url}/api/v1/jobs/${job.id}`, headers: auth },
      {
        name: 'POST /api/v1/jobs',
        method: 'POST',
        url: `${orch.url}/api/v1/jobs`,
        headers: json,
        bodyTemplate: JSON.stringify({ name: 'bench-{{n}}', command: 'echo {{n}}', priority: 5, tags: ['bench'], labels: { pool: 'default' } }),
      },
    ];

    for (const t of targets) await measure({ ...t, connections, name: `${t.name} (warm-up)`, durationSeconds: Math.min(3, durationSeconds) });
    const best = new Map<string, LoadResult>();
    for (let round = 1; round <= rounds; round++) {
      for (const t of targets) {
        const r = await measure({ ...t, connections, durationSeconds });
        const prev = best.get(t.name);
        if (!prev || r.requestsPerSecond > prev.requestsPerSecond) best.set(t.name, r);
        if (!values.json) process.stderr.write(`round ${round}/${rounds} ${r.name}: ${fmt(r.requestsPerSecond)} req/s\n`);
      }
    }
    const results = targets.map((t) => best.get(t.name)!);
    report(results, { durationSeconds, connections, rounds, target: values.url ?? 'in-process (throwaway database)' }, values.json);
  } finally {
    await orch.close();
    await hello.close();
  }
}

function report(results: LoadResult[], run: { durationSeconds: number; connections: number; rounds: number; target: string }, asJson: boolean): void {
  const base = results[0]?.requestsPerSecond ?? 0;
  const targets: Record<string, number> = { 'GET /api/v1/jobs/:id': 50, 'POST /api/v1/jobs': 30 };
  const machine = {
    cpus: os.cpus().length,
    cpu_model: os.cpus()[0]?.model ?? 'unknown',
    memory_gib: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
  };
  const rows = results.map((r) => ({
    ...r,
    ratio: pct(r.requestsPerSecond, base),
    target: targets[r.name],
  }));
  if (asJson) {
    process.stdout.write(`${JSON.stringify({ machine, run, results: rows }, null, 2)}\n`);
    return;
  }
  const lines = [
    `machine: ${machine.cpus} CPU (${machine.cpu_model}), ${machine.memory_gib} GiB, Node ${machine.node}, ${machine.platform}`,
    `run: ${run.connections} connections, ${run.durationSeconds}s per target, best of ${run.rounds} rounds after a warm-up, orchestrator: ${run.target}`,
    `load average at the end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} (other work on the machine lowers every figure)`,
    '',
    '| target | req/s | p50 ms | p99 ms | requests | non-2xx | errors | vs hello-world | goal |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---|',
    ...rows.map(
      (r, i) =>
        `| ${r.name} | ${fmt(r.requestsPerSecond)} | ${r.p50} | ${r.p99} | ${fmt(r.total)} | ${r.non2xx} | ${r.errors} | ${i === 0 ? '100%' : `${fmt(r.ratio, 1)}%`} | ${
          r.target === undefined ? '' : `≥ ${r.target}% ${r.ratio >= r.target ? 'met' : 'NOT met'}`
        } |`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  const failed = rows.filter((r) => r.non2xx > 0 || r.errors > 0);
  if (failed.length) {
    process.stdout.write(`\nwarning: ${failed.map((r) => r.name).join(', ')} had non-2xx answers or errors: figures are not comparable\n`);
    process.exitCode = 1;
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});

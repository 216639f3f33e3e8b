// The three services built by `pnpm build`, in-process on a throwaway database and NATS prefix
// (createTestEnv), for the time-and-failure benchmarks (cron-lateness.ts, failover.ts).
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Config, TestEnv } from '@hodei/platform';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

export async function until<T>(fn: () => Promise<T | undefined | null | false>, timeoutMs: number, what: string, everyMs = 10): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function call(url: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(url + path, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}


type Starter = (config: Config) => Promise<{ url: string; stop: () => Promise<void> }>;
/** A service's `start…` function from its build (`services/<svc>/dist`). */
export async function load(svc: string, fn: string): Promise<Starter> {
  const path = resolve(root, `services/${svc}/dist/service.js`);
  const mod = (await import(pathToFileURL(path).href).catch((err: unknown) => {
    throw new Error(`cannot load ${path} (run pnpm build first): ${String(err)}`);
  })) as Record<string, Starter>;
  return mod[fn]!;
}

export interface Stack {
  env: TestEnv;
  orchestrator: string;
  scheduler: string;
  wm: string;
  config: Partial<Config>;
  startWorker: (labels: Record<string, string>, slots?: number) => Promise<{ id: string; pid: number }>;
  close: () => Promise<void>;
}

export async function startStack(overrides: Partial<Config> = {}): Promise<Stack> {
  const { createTestEnv, serviceAddresses, workerOnline } = await import('@hodei/platform');
  const env = createTestEnv();
  const { ports, urls } = await serviceAddresses();
  const config = { urls, ...overrides };
  const stops: Array<() => Promise<void>> = [];
  try {
    stops.unshift((await (await load('orchestrator', 'startOrchestrator'))(env.config('orchestrator', { ...config, port: ports.orchestrator }))).stop);
    stops.unshift((await (await load('scheduler', 'startScheduler'))(env.config('scheduler', { ...config, port: ports.scheduler }))).stop);
    stops.unshift((await (await load('worker-manager', 'startWorkerManager'))(env.config('worker-manager', { ...config, port: ports['worker-manager'] }))).stop);
  } catch (err) {
    for (const stop of stops) await stop().catch(() => undefined);
    await env.cleanup();
    throw err;
  }
  return {
    env,
    orchestrator: urls.orchestrator,
    scheduler: urls.scheduler,
    wm: urls['worker-manager'],
    config,
    startWorker: async (labels, slots = 2) => {
      const w = await call(urls['worker-manager'], 'POST', '/api/v1/workers', { type: 'shell', labels, capacity: { slots, cpu_cores: 8, memory_bytes: 8 * 1024 ** 3 } });
      if (w.status !== 201) throw new Error(`POST /api/v1/workers: ${w.status} ${JSON.stringify(w.body)}`);
      await workerOnline(urls.scheduler, w.body.id);
      return { id: w.body.id as string, pid: w.body.pid as number };
    },
    close: async () => {
      for (const stop of stops) await stop().catch(() => undefined);
      await env.cleanup();
    },
  };
}

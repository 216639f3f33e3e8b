// Pipeline runs: how long a run takes next to the same executions driven by a client directly.
//   chain:   40 jobs running `true`, each depending on the one before: run start → run completed,
//            and the per-hop overhead (a job's start minus its dependency's finish, worker clock);
//            next to a client chaining the same 40 executions itself (submit the next one the moment
//            worker-manager's event stream says the previous completed).
//   fan-out: 200 independent jobs running `true` on one worker with 8 slots: run start → completed,
//            next to the same 200 executions submitted straight to worker-manager.
// The three services built by `pnpm build` run in-process on a throwaway database (failure-stack.ts).
// Flags: --chain N (40), --fanout N (200), --slots N (8), --rounds N (2), --json.
import { call, quantile, startStack, type Stack } from './failure-stack.js';

const args = process.argv.slice(2);
const flag = (name: string, def: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const CHAIN = flag('chain', 40);
const FANOUT = flag('fanout', 200);
const SLOTS = flag('slots', 8);
const ROUNDS = flag('rounds', 2);
const JSON_OUT = args.includes('--json');

interface Sse {
  next: (match: (event: string, data: any) => boolean, timeoutMs: number) => Promise<{ event: string; data: any; at: number }>;
  close: () => void;
}

/** Opens an SSE stream and lets callers wait for a matching event (events are timestamped on arrival). */
async function openSse(url: string): Promise<Sse> {
  const ctrl = new AbortController();
  const res = await fetch(url, { headers: { accept: 'text/event-stream' }, signal: ctrl.signal });
  if (res.status !== 200 || !res.body) throw new Error(`${url}: ${res.status}`);
  const seen: Array<{ event: string; data: any; at: number }> = [];
  const waiters: Array<{ match: (e: string, d: any) => boolean; resolve: (v: { event: string; data: any; at: number }) => void }> = [];
  void (async () => {
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let buf = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        const at = performance.now();
        buf += dec.decode(value, { stream: true });
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const event = /^event: (.*)$/m.exec(frame)?.[1];
          const data = /^data: (.*)$/m.exec(frame)?.[1];
          if (!event || !data) continue;
          const e = { event, data: JSON.parse(data), at };
          const w = waiters.find((x) => x.match(e.event, e.data));
          if (w) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(e);
          } else seen.push(e);
        }
      }
    } catch {
      // aborted by close()
    }
  })();
  return {
    next: (match, timeoutMs) => {
      const k = seen.findIndex((e) => match(e.event, e.data));
      if (k >= 0) return Promise.resolve(seen.splice(k, 1)[0]!);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('timed out waiting for an event')), timeoutMs);
        waiters.push({ match, resolve: (v) => (clearTimeout(t), resolve(v)) });
      });
    },
    close: () => ctrl.abort(),
  };
}

async function pipeline(stack: Stack, name: string, jobs: unknown[]): Promise<string> {
  const p = await call(stack.orchestrator, 'POST', '/api/v1/pipelines', { name, jobs });
  if (p.status !== 201) throw new Error(`POST /api/v1/pipelines: ${p.status} ${JSON.stringify(p.body)}`);
  return p.body.id;
}

/** Starts a run and waits for its `completed` event; returns wall ms and the final run. */
async function runToEnd(stack: Stack, pipelineId: string): Promise<{ ms: number; run: any }> {
  const t0 = performance.now();
  const r = await call(stack.orchestrator, 'POST', `/api/v1/pipelines/${pipelineId}/runs`, {});
  if (r.status !== 202) throw new Error(`POST runs: ${r.status} ${JSON.stringify(r.body)}`);
  const sse = await openSse(`${stack.orchestrator}/api/v1/pipeline-runs/${r.body.id}/events/stream`);
  try {
    const done = await sse.next((e) => e === 'completed', 300_000);
    if (done.data.status !== 'completed') throw new Error(`run ended ${done.data.status}`);
    return { ms: done.at - t0, run: done.data };
  } finally {
    sse.close();
  }
}

const hops = (run: any): number[] => {
  const out: number[] = [];
  for (let i = 1; i < run.jobs.length; i++) out.push(Date.parse(run.jobs[i].started_at) - Date.parse(run.jobs[i - 1].finished_at));
  return out;
};

/** A client chaining `n` executions itself through worker-manager. */
async function directChain(stack: Stack, n: number): Promise<{ ms: number; hops: number[] }> {
  const events = await openSse(`${stack.wm}/api/v1/events/stream`);
  try {
    const t0 = performance.now();
    const execs: any[] = [];
    for (let i = 0; i < n; i++) {
      const e = await call(stack.wm, 'POST', '/api/v1/execute', { name: `direct-${i}`, command: 'true' });
      if (e.status !== 202) throw new Error(`POST execute: ${e.status}`);
      await events.next((ev, d) => ev === 'job_event' && d.execution_id === e.body.id && d.status === 'completed', 60_000);
      execs.push(e.body.id);
    }
    const ms = performance.now() - t0;
    const rows = await Promise.all(execs.map(async (id) => (await call(stack.wm, 'GET', `/api/v1/executions/${id}`)).body));
    const h: number[] = [];
    for (let i = 1; i < rows.length; i++) h.push(Date.parse(rows[i].started_at) - Date.parse(rows[i - 1].finished_at));
    return { ms, hops: h };
  } finally {
    events.close();
  }
}

/** `n` executions submitted straight to worker-manager (16 at a time, like the orchestrator), until all completed. */
async function directFanout(stack: Stack, n: number): Promise<number> {
  const events = await openSse(`${stack.wm}/api/v1/events/stream`);
  try {
    const t0 = performance.now();
    const ids = new Set<string>();
    let k = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (k < n) {
          k++;
          const e = await call(stack.wm, 'POST', '/api/v1/execute', { name: 'fan', command: 'true' });
          if (e.status !== 202) throw new Error(`POST execute: ${e.status}`);
          ids.add(e.body.id);
        }
      }),
    );
    let done = 0;
    while (done < n) {
      await events.next((ev, d) => ev === 'job_event' && d.status === 'completed' && ids.has(d.execution_id), 300_000);
      done++;
    }
    return performance.now() - t0;
  } finally {
    events.close();
  }
}

const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

const stack = await startStack();
try {
  await stack.startWorker({}, SLOTS);
  const chainId = await pipeline(
    stack,
    'bench-chain',
    Array.from({ length: CHAIN }, (_, i) => ({ name: `step-${i}`, command: 'true', ...(i ? { depends_on: [`step-${i - 1}`] } : {}) })),
  );
  const fanId = await pipeline(stack, 'bench-fanout', Array.from({ length: FANOUT }, (_, i) => ({ name: `leaf-${i}`, command: 'true' })));
  const warm = await pipeline(stack, 'bench-warm', Array.from({ length: 5 }, (_, i) => ({ name: `w-${i}`, command: 'true', ...(i ? { depends_on: [`w-${i - 1}`] } : {}) })));
  await runToEnd(stack, warm);
  await directChain(stack, 5);

  const results: any[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const chain = await runToEnd(stack, chainId);
    const h = hops(chain.run);
    const direct = await directChain(stack, CHAIN);
    const fan = await runToEnd(stack, fanId);
    const fanDirect = await directFanout(stack, FANOUT);
    results.push({
      round,
      chain: { jobs: CHAIN, wall_ms: chain.ms, per_job_ms: chain.ms / CHAIN, hop_p50_ms: quantile(h, 0.5), hop_p90_ms: quantile(h, 0.9), hop_mean_ms: mean(h) },
      chain_direct: { wall_ms: direct.ms, per_job_ms: direct.ms / CHAIN, hop_p50_ms: quantile(direct.hops, 0.5), hop_mean_ms: mean(direct.hops) },
      fanout: { jobs: FANOUT, slots: SLOTS, run_ms: fan.ms, direct_ms: fanDirect, ratio: fan.ms / fanDirect },
    });
  }
  if (JSON_OUT) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  else {
    process.stdout.write(`chain of ${CHAIN} \`true\` jobs; fan-out of ${FANOUT} on one worker with ${SLOTS} slots; ${ROUNDS} round(s)\n\n`);
    process.stdout.write('| round | chain wall ms | per job ms | hop p50 ms | hop p90 ms | direct chain wall ms | direct hop p50 ms | fan-out run ms | fan-out direct ms | run / direct |\n');
    process.stdout.write('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n');
    for (const r of results)
      process.stdout.write(
        `| ${r.round} | ${fmt(r.chain.wall_ms)} | ${fmt(r.chain.per_job_ms)} | ${fmt(r.chain.hop_p50_ms)} | ${fmt(r.chain.hop_p90_ms)} | ${fmt(r.chain_direct.wall_ms)} | ${fmt(r.chain_direct.hop_p50_ms)} | ${fmt(r.fanout.run_ms)} | ${fmt(r.fanout.direct_ms)} | ${r.fanout.ratio.toFixed(2)} |\n`,
      );
  }
} finally {
  await stack.close();
}

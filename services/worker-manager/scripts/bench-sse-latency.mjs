// Live latency: one log line published on JetStream (as a worker does) → received by an SSE client,
// at 100 lines/s, with worker-manager in its own process.
// usage: node services/worker-manager/scripts/bench-sse-latency.mjs [lines] [subscribers]
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import pg from 'pg';

const N = Number(process.argv[2] ?? 500);
const SUBS = Number(process.argv[3] ?? 1);
const tag = randomBytes(4).toString('hex');
const dbName = `hodei_bench_${tag}`;
const prefix = `b${tag}`;
const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
await admin.connect();
await admin.query(`CREATE DATABASE ${dbName}`);
const port = 18000 + Math.floor(Math.random() * 1000);
const wm = spawn(process.execPath, [new URL('../dist/main.js', import.meta.url).pathname], {
  env: { ...process.env, DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${dbName}`, HODEI_NATS_PREFIX: prefix, HODEI_WORKER_MANAGER_PORT: String(port), LOG_LEVEL: 'error' },
  stdio: ['ignore', 'inherit', 'inherit'],
});
const url = `http://127.0.0.1:${port}`;
for (;;) {
  try {
    if ((await fetch(`${url}/health`)).ok) break;
  } catch {}
  await new Promise((r) => setTimeout(r, 100));
}
const ex = await (await fetch(`${url}/api/v1/execute`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ command: 'x' }) })).json();
const sent = new Map();
const lat = [];
let received = 0;
const clients = [];
for (let i = 0; i < SUBS; i++) {
  const res = await fetch(`${url}/api/v1/executions/${ex.id}/logs/stream`);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  clients.push((async () => {
    let buf = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      const now = performance.now();
      buf += dec.decode(value, { stream: true });
      let k;
      while ((k = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, k);
        buf = buf.slice(k + 2);
        const m = /^id: (\d+)/m.exec(block);
        if (m) {
          lat.push(now - sent.get(Number(m[1])));
          received++;
        }
        if (block.includes('event: completed')) return;
      }
    }
  })());
}
const nc = await connect({ servers: 'nats://127.0.0.1:4222' });
const js = jetstream(nc);
const enc = new TextEncoder();
for (let s = 1; s <= N; s++) {
  sent.set(s, performance.now());
  await js.publish(`${prefix}.logs.${ex.id}`, enc.encode(JSON.stringify({ execution_id: ex.id, lines: [{ seq: s, stream: 'stdout', line: `line ${s}`, timestamp: new Date().toISOString() }] })));
  await new Promise((r) => setTimeout(r, 10));
}
await js.publish(`${prefix}.execution.${ex.id}.status`, enc.encode(JSON.stringify({ execution_id: ex.id, job_id: null, worker_id: null, status: 'completed', exit_code: 0, last_seq: N, timestamp: new Date().toISOString() })));
await Promise.all(clients);
lat.sort((a, b) => a - b);
const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(2);
console.log(JSON.stringify({ lines: N, subscribers: SUBS, received, expected: N * SUBS, p50_ms: +q(0.5), p99_ms: +q(0.99), max_ms: +q(1) }));
wm.kill('SIGTERM');
await new Promise((r) => wm.once('exit', r));
await nc.close();
await admin.query(`DROP DATABASE ${dbName} WITH (FORCE)`);
const jsm = await jetstreamManager(await connect({ servers: 'nats://127.0.0.1:4222' }));
for (const s of [`${prefix.toUpperCase()}_EVENTS`, `${prefix.toUpperCase()}_LOGS`]) await jsm.streams.delete(s).catch(() => {});
await admin.end();
process.exit(0);

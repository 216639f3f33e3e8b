// Ingest benchmark: N log lines published on JetStream the way a worker does (batches of 300),
// time until worker-manager stored all of them, beside a raw batched insert of the same rows into a
// table of the same shape, measured in the same run; worker-manager's peak RSS.
// usage: node services/worker-manager/scripts/bench-ingest.mjs [lines]   (after npx tsc -b services/worker-manager)
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import pg from 'pg';

const N = Number(process.argv[2] ?? 1_000_000);
const BATCH = 300;
const tag = randomBytes(4).toString('hex');
const dbName = `hodei_bench_${tag}`;
const prefix = `b${tag}`;
const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
await admin.connect();
await admin.query(`CREATE DATABASE ${dbName}`);
const dbUrl = `postgres://postgres@127.0.0.1:5432/${dbName}`;

const port = 18000 + Math.floor(Math.random() * 1000);
const wm = spawn(process.execPath, [new URL('../dist/main.js', import.meta.url).pathname], {
  env: { ...process.env, DATABASE_URL: dbUrl, HODEI_NATS_PREFIX: prefix, HODEI_WORKER_MANAGER_PORT: String(port), LOG_LEVEL: 'warn' },
  stdio: ['ignore', 'inherit', 'inherit'],
});
const url = `http://127.0.0.1:${port}`;
for (let i = 0; ; i++) {
  try {
    if ((await fetch(`${url}/health`)).ok) break;
  } catch {}
  await new Promise((r) => setTimeout(r, 100));
}
let peakRss = 0;
const rssTimer = setInterval(() => {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${wm.pid}/status`, 'utf8'));
  if (m) peakRss = Math.max(peakRss, Number(m[1]) * 1024);
}, 50);

const ex = await (await fetch(`${url}/api/v1/execute`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ command: `seq 1 ${N}` }) })).json();
const nc = await connect({ servers: 'nats://127.0.0.1:4222' });
const js = jetstream(nc);
const ts = new Date().toISOString();
const enc = new TextEncoder();
const db = new pg.Client({ connectionString: dbUrl });
await db.connect();

const t0 = performance.now();
const inflight = [];
for (let s = 1; s <= N; s += BATCH) {
  const lines = [];
  for (let q = s; q < s + BATCH && q <= N; q++) lines.push({ seq: q, stream: 'stdout', line: String(q), timestamp: ts });
  inflight.push(js.publish(`${prefix}.logs.${ex.id}`, enc.encode(JSON.stringify({ execution_id: ex.id, lines }))));
  if (inflight.length >= 200) await Promise.all(inflight.splice(0));
}
await Promise.all(inflight);
const tPub = performance.now();
for (;;) {
  const { rows } = await db.query('SELECT count(*)::int AS n FROM worker_manager.log_lines WHERE execution_id = $1', [ex.id]);
  if (rows[0].n >= N) break;
  await new Promise((r) => setTimeout(r, 50));
}
const tStored = performance.now();
clearInterval(rssTimer);

// the machine's own limit: the same rows, batched inserts of 5000 straight from one client
await db.query('CREATE TABLE raw_lines (execution_id uuid, seq integer, stream smallint, line text, ts timestamptz, PRIMARY KEY (execution_id, seq))');
const r0 = performance.now();
const RB = 5000;
for (let s = 1; s <= N; s += RB) {
  const ids = [], seqs = [], streams = [], texts = [], tss = [];
  for (let q = s; q < s + RB && q <= N; q++) { ids.push(ex.id); seqs.push(q); streams.push(1); texts.push(String(q)); tss.push(ts); }
  await db.query('INSERT INTO raw_lines SELECT * FROM unnest($1::uuid[], $2::int[], $3::smallint[], $4::text[], $5::timestamptz[])', [ids, seqs, streams, texts, tss]);
}
const r1 = performance.now();

const ingestRate = N / ((tStored - t0) / 1000);
const rawRate = N / ((r1 - r0) / 1000);
console.log(JSON.stringify({
  lines: N,
  published_s: +((tPub - t0) / 1000).toFixed(2),
  stored_s: +((tStored - t0) / 1000).toFixed(2),
  ingest_lines_per_s: Math.round(ingestRate),
  raw_insert_lines_per_s: Math.round(rawRate),
  ratio: +(ingestRate / rawRate).toFixed(2),
  worker_manager_peak_rss_mib: +(peakRss / 1024 / 1024).toFixed(1),
}));
wm.kill('SIGTERM');
await new Promise((r) => wm.once('exit', r));
await db.end();
await nc.close();
await admin.query(`DROP DATABASE ${dbName} WITH (FORCE)`);
const jsm = await jetstreamManager(await connect({ servers: 'nats://127.0.0.1:4222' }));
for (const s of [`${prefix.toUpperCase()}_EVENTS`, `${prefix.toUpperCase()}_LOGS`]) await jsm.streams.delete(s).catch(() => {});
await admin.end();
process.exit(0);

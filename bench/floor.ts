// The CPU floor of "The path of one execution" (ARCHITECTURE.md) without any of the services'
// code, and no process spawned: what the mandated messages and rows cost by themselves, to set
// against the throughput target of issue 3 (300 `true` jobs at ≥ 0.8× a bare spawn loop).
//
// Per job, exactly the mandated steps: POST /execute (node:http, keep-alive, from a client in its
// own process) → the row stored `queued` → the queued event published on JetStream (publish ack)
// → the scheduler's durable pull consumer → the placement recorded, then the ack → the assignment
// as a core request/reply to the worker → the worker's final status on JetStream → worker-manager's
// durable pull consumer records it, then acks; the scheduler frees the slot from the same status
// (a core subscription: cheaper than a second durable consumer). As cheap as fair: every statement
// takes what arrived in one turn of the event loop (INSERT … unnest, UPDATE … FROM unnest), no
// schema validation, worker-manager acks once per turn (AckPolicy.All). The three roles and the
// worker share one process (each with its own NATS connection and pool); nats-server is one of its
// own, so its CPU is this run's alone. `--messages batched` also carries every execution of one
// turn in one message (one publish, one delivery, one request for several jobs): a shape the
// protocol does not have, measured to show what it would save. `--messages both` (default) runs
// the two, one after the other.
//
//   tsx floor.ts [--jobs 3000] [--inflight 16] [--slots 8] [--spawns 300] [--messages single|batched|both]
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import os from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { AckPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType, type JsMsg } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';
import { Batcher, createTestEnv, dropDatabase, ensureDatabase, freePorts } from '@hodei/platform';
import { bareSpawnLoop, cpuMs, machineBusyMs, type SpawnLoop } from './spawn-loop.js';

type Mode = 'single' | 'batched';
interface Queued {
  execution_id: string;
  priority: number;
  spec: unknown;
}
interface Final {
  execution_id: string;
  worker_id: string;
  status: string;
  exit_code: number;
  finished_at: string;
  duration_ms: number;
  last_seq: number;
}

/** Sends items as messages: each on its own, or (batched) every item of one turn in one message. */
function sender<T>(send: (items: T[]) => Promise<unknown>, mode: Mode): (item: T) => Promise<unknown> {
  if (mode === 'single') return (item) => send([item]);
  const batch = new Batcher<T>(async (items) => void (await send(items)));
  return (item) => batch.add(item);
}

interface Skeleton {
  url: string;
  /** Resolves once `n` final statuses have been recorded since the start. */
  recorded: (n: number) => Promise<void>;
  /** Statements run for the executions so far. */
  statements: () => number;
  /** Throws unless `n` executions are stored `completed`, each with its placement. */
  check: (n: number) => Promise<void>;
  /** The pids of this run's PostgreSQL backends (the pools' connections, all open once warm) and of
   *  the server's walwriter, checkpointer and background writer (shared with its other users). */
  postgres: () => Promise<{ backends: number[]; background: number[] }>;
  close: () => Promise<void>;
}

async function startSkeleton(natsUrl: string, databaseUrl: string, prefix: string, mode: Mode, slots: number): Promise<Skeleton> {
  const p = prefix;
  const stream = p.toUpperCase();
  const queuedSubject = `${p}.execution.queued`;
  const statusSubject = (id: string) => `${p}.execution.${mode === 'single' ? id : 'batch'}.status`;
  const assignSubject = `${p}_rpc.assign.w1`;
  const conns: NatsConnection[] = await Promise.all([0, 1, 2].map(() => connect({ servers: natsUrl, noAsyncTraces: true })));
  const [wmNc, schedNc, workerNc] = conns as [NatsConnection, NatsConnection, NatsConnection];
  const jsm = await jetstreamManager(wmNc);
  await jsm.streams.add({ name: stream, subjects: [`${p}.execution.>`], retention: RetentionPolicy.Limits, storage: StorageType.File, max_age: 7 * 24 * 3600 * 1e9 });
  await jsm.consumers.add(stream, { durable_name: 'scheduler', filter_subject: queuedSubject, ack_policy: AckPolicy.Explicit, max_ack_pending: 10_000 });
  await jsm.consumers.add(stream, { durable_name: 'worker-manager', filter_subject: `${p}.execution.*.status`, ack_policy: AckPolicy.All, max_ack_pending: 10_000 });
  let statements = 0;
  const wmPool = new pg.Pool({ connectionString: databaseUrl, max: 2, idleTimeoutMillis: 0 });
  const schedPool = new pg.Pool({ connectionString: databaseUrl, max: 1, idleTimeoutMillis: 0 });
  await wmPool.query(`CREATE SCHEMA ${p};
    CREATE TABLE ${p}.executions (id uuid PRIMARY KEY, status text NOT NULL, spec jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
      worker_id text, exit_code int, finished_at timestamptz, duration_ms int);
    CREATE TABLE ${p}.placements (execution_id uuid PRIMARY KEY, worker_id text NOT NULL, placed_at timestamptz NOT NULL DEFAULT now());`);
  let failure: ((err: unknown) => void) | undefined;
  const failed = new Promise<never>((_, reject) => (failure = reject));
  failed.catch(() => undefined);
  const fail = (err: unknown) => failure!(err);
  wmPool.on('error', fail);
  schedPool.on('error', fail);

  // ---- worker-manager: POST /execute, then the final statuses
  const wmJs = jetstream(wmNc);
  const insert = new Batcher<[string, string]>(async (rows) => {
    statements++;
    await wmPool.query(`INSERT INTO ${p}.executions (id, status, spec) SELECT id, 'queued', spec FROM unnest($1::uuid[], $2::jsonb[]) AS r(id, spec)`, [rows.map((r) => r[0]), rows.map((r) => r[1])]);
  });
  const publishQueued = sender<Queued>((items) => wmJs.publish(queuedSubject, JSON.stringify(items)), mode);
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      let spec: unknown;
      try {
        spec = JSON.parse(body);
      } catch {
        res.writeHead(400).end();
        return;
      }
      const id = randomUUID();
      insert
        .add([id, body])
        .then(() => publishQueued({ execution_id: id, priority: 0, spec }))
        .then(() => {
          const out = `{"id":"${id}","status":"queued"}`;
          res.writeHead(202, { 'content-type': 'application/json', 'content-length': out.length }).end(out);
        }, fail);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };

  let done = 0;
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  const update = new Batcher<Final>(async (rows) => {
    statements++;
    await wmPool.query(
      `UPDATE ${p}.executions e SET status = r.status, worker_id = r.worker_id, exit_code = r.exit_code, finished_at = r.finished_at, duration_ms = r.duration_ms
       FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::timestamptz[], $6::int[]) AS r(id, status, worker_id, exit_code, finished_at, duration_ms)
       WHERE e.id = r.id AND e.status IN ('queued', 'running')`,
      [rows.map((r) => r.execution_id), rows.map((r) => r.status), rows.map((r) => r.worker_id), rows.map((r) => r.exit_code), rows.map((r) => r.finished_at), rows.map((r) => r.duration_ms)],
    );
  });
  // AckPolicy.All: acking the last message recorded in a turn acks every one before it
  let toAck: JsMsg | undefined;
  const ackLater = (m: JsMsg) => {
    if (!toAck) setImmediate(() => (toAck!.ack(), (toAck = undefined)));
    toAck = m;
  };
  const finals = await (await wmJs.consumers.get(stream, 'worker-manager')).consume({ max_messages: 200 });
  void (async () => {
    for await (const m of finals) {
      const items = m.json<Final[]>();
      Promise.all(items.map((f) => update.add(f))).then(() => {
        ackLater(m);
        done += items.length;
        for (const w of waiters.filter((w) => done >= w.n)) w.resolve();
      }, fail);
    }
  })().catch(fail);

  // ---- scheduler: queued executions in priority order, one worker with `slots` slots
  const schedJs = jetstream(schedNc);
  let free = slots;
  const waiting: Array<{ e: Queued; placed: () => void }> = [];
  const record = new Batcher<string>(async (ids) => {
    statements++;
    await schedPool.query(`INSERT INTO ${p}.placements (execution_id, worker_id) SELECT unnest($1::uuid[]), 'w1'`, [ids]);
  });
  const assign = sender<Queued>(async (items) => {
    const reply = await schedNc.request(assignSubject, JSON.stringify(items), { timeout: 10_000 });
    if (!reply.json<{ accepted: boolean }>().accepted) throw new Error('assignment refused');
  }, mode);
  const place = () => {
    while (free > 0 && waiting.length) {
      free--;
      const { e, placed } = waiting.shift()!;
      record
        .add(e.execution_id)
        .then(() => (placed(), assign(e)))
        .catch(fail);
    }
  };
  const queued = await (await schedJs.consumers.get(stream, 'scheduler')).consume({ max_messages: 1000 });
  void (async () => {
    for await (const m of queued) {
      const items = m.json<Queued[]>();
      let left = items.length;
      for (const e of items) {
        const at = waiting.findIndex((w) => w.e.priority < e.priority);
        waiting.splice(at < 0 ? waiting.length : at, 0, { e, placed: () => --left === 0 && m.ack() });
      }
      place();
    }
  })().catch(fail);
  schedNc.subscribe(`${p}.execution.*.status`, {
    callback: (err, m) => {
      if (err) return fail(err);
      free += m.json<Final[]>().filter((f) => f.status !== 'running').length;
      place();
    },
  });

  // ---- the worker: accepts the assignment, runs nothing, reports the final status
  const workerJs = jetstream(workerNc);
  const report = sender<Final>((items) => workerJs.publish(statusSubject(items[0]!.execution_id), JSON.stringify(items)), mode);
  workerNc.subscribe(assignSubject, {
    callback: (err, m) => {
      if (err) return fail(err);
      const items = m.json<Queued[]>();
      m.respond('{"accepted":true}');
      for (const a of items) {
        const finished = new Date().toISOString();
        report({ execution_id: a.execution_id, worker_id: 'w1', status: 'completed', exit_code: 0, finished_at: finished, duration_ms: 0, last_seq: 0 }).catch(fail);
      }
    },
  });

  await wmNc.flush();
  return {
    url: `http://127.0.0.1:${port}/api/v1/execute`,
    recorded: (n) => Promise.race([failed, new Promise<void>((resolve) => (done >= n ? resolve() : waiters.push({ n, resolve })))]),
    statements: () => statements,
    check: async (n) => {
      const { rows } = await wmPool.query<{ completed: number; placed: number }>(
        `SELECT (SELECT count(*)::int FROM ${p}.executions WHERE status = 'completed') AS completed, (SELECT count(*)::int FROM ${p}.placements) AS placed`,
      );
      if (rows[0]!.completed !== n || rows[0]!.placed !== n) throw new Error(`${n} jobs, but ${JSON.stringify(rows[0])}`);
    },
    postgres: async () => {
      const { rows } = await wmPool.query<{ pid: number; ours: boolean }>(
        `SELECT pid, datname IS NOT NULL AS ours FROM pg_stat_activity WHERE datname = current_database() OR backend_type IN ('walwriter', 'checkpointer', 'background writer')`,
      );
      return { backends: rows.filter((r) => r.ours).map((r) => r.pid), background: rows.filter((r) => !r.ours).map((r) => r.pid) };
    },
    close: async () => {
      server.closeAllConnections();
      server.close();
      await Promise.all(conns.map((nc) => nc.drain()));
      await wmPool.query(`DROP SCHEMA ${p} CASCADE`);
      await Promise.all([wmPool.end(), schedPool.end()]);
    },
  };
}

// The load: its own process, `inflight` POSTs at a time over keep-alive connections. It submits
// `warm` jobs, says "ready", waits for a line on stdin, submits `jobs` more and prints its own CPU.
const CLIENT = `
const http = require('node:http');
const [url, warm, jobs, inflight] = process.argv.slice(1).map((a, i) => (i ? Number(a) : a));
const agent = new http.Agent({ keepAlive: true, maxSockets: inflight });
const body = JSON.stringify({ command: 'true' });
const post = () => new Promise((ok, fail) => {
  const req = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', accept: 'application/json', 'content-length': body.length } }, (res) => {
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (d) => (text += d));
    res.on('end', () => (res.statusCode === 202 ? ok(JSON.parse(text).id) : fail(new Error('POST: ' + res.statusCode + ' ' + text))));
  });
  req.on('error', fail);
  req.end(body);
});
const run = async (n) => {
  let sent = 0;
  await Promise.all(Array.from({ length: inflight }, async () => { while (sent < n) { sent++; await post(); } }));
};
const fail = (err) => { process.stderr.write(String(err.stack || err) + '\\n'); process.exit(1); };
run(warm).then(() => {
  process.stdout.write('ready\\n');
  process.stdin.once('data', () => {
    const c0 = process.cpuUsage();
    run(jobs).then(() => {
      const c = process.cpuUsage(c0);
      process.stdout.write(JSON.stringify({ cpuMs: (c.user + c.system) / 1000 }) + '\\n');
    }, fail);
  });
}, fail);
`;

interface FloorRun {
  mode: Mode;
  rate: number;
  /** CPU per job by part, ms */
  perJob: Record<string, number>;
  /** busy CPU per job of the rest of the machine meanwhile (other processes, unattributed kernel work), ms */
  restMs: number;
  /** per job: statements, messages into nats-server and out of it */
  traffic: { statements: number; natsIn: number; natsOut: number };
}

async function runFloor(nats: Nats, databaseUrl: string, mode: Mode, jobs: number, inflight: number, slots: number): Promise<FloorRun> {
  const warm = 300;
  const skeleton = await startSkeleton(nats.url, databaseUrl, `floor_${mode}_${process.pid}`, mode, slots);
  const client = spawn(process.execPath, ['-e', CLIENT, skeleton.url, String(warm), String(jobs), String(inflight)], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    const lines = createInterface({ input: client.stdout })[Symbol.asyncIterator]();
    const line = async () => {
      const next = await Promise.race([lines.next(), once(client, 'exit').then(([code]) => Promise.reject(new Error(`the client exited (${code})`)))]);
      return next.done ? '' : next.value;
    };
    if ((await line()) !== 'ready') throw new Error('the client did not warm up');
    await skeleton.recorded(warm);
    const { backends, background } = await skeleton.postgres();
    const parts = (): Record<string, number> => ({
      'skeleton (node)': (({ user, system }) => (user + system) / 1000)(process.cpuUsage()),
      'nats-server': cpuMs(nats.pid),
      'postgres backends': sum(backends.map(cpuMs)),
      'postgres background': sum(background.map(cpuMs)),
    });
    const before = parts();
    const [msgs0, statements0] = [await nats.messages(), skeleton.statements()];
    const busy0 = machineBusyMs();
    const t0 = performance.now();
    client.stdin!.write('go\n');
    await skeleton.recorded(warm + jobs);
    const seconds = (performance.now() - t0) / 1000;
    const after = parts();
    const busy = machineBusyMs() - busy0;
    const msgs = await nats.messages();
    const traffic = { statements: (skeleton.statements() - statements0) / jobs, natsIn: (msgs.in - msgs0.in) / jobs, natsOut: (msgs.out - msgs0.out) / jobs };
    const clientCpu = JSON.parse(await line()) as { cpuMs: number };
    await skeleton.check(warm + jobs);
    const perJob: Record<string, number> = { 'client (own process)': clientCpu.cpuMs / jobs };
    for (const k of Object.keys(after)) perJob[k] = (after[k]! - before[k]!) / jobs;
    return { mode, rate: jobs / seconds, perJob, restMs: busy / jobs - sum(Object.values(perJob)), traffic };
  } finally {
    client.kill();
    await skeleton.close();
  }
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

interface Nats {
  url: string;
  pid: number;
  /** Messages the server received from its clients and delivered to them so far (its /varz). */
  messages: () => Promise<{ in: number; out: number }>;
  stop: () => Promise<void>;
}

async function startNats(): Promise<Nats> {
  const [port, monitor] = (await freePorts(2)) as [number, number];
  const dir = mkdtempSync(join(os.tmpdir(), 'hodei-floor-nats-'));
  const child: ChildProcess = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-m', String(monitor), '-js', '-sd', dir], { stdio: 'ignore' });
  let spawnError: Error | undefined;
  child.once('error', (err) => (spawnError = err));
  const exited = once(child, 'exit');
  const url = `nats://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (spawnError) throw new Error(`nats-server (from PATH) did not start: ${spawnError.message}`);
    const nc = await connect({ servers: url }).catch(() => undefined);
    if (nc) {
      await nc.close();
      break;
    }
    if (i > 100 || child.exitCode !== null) throw new Error(`nats-server did not start on ${url}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    pid: child.pid!,
    messages: async () => {
      const varz = (await (await fetch(`http://127.0.0.1:${monitor}/varz`)).json()) as { in_msgs: number; out_msgs: number };
      return { in: varz.in_msgs, out: varz.out_msgs };
    },
    stop: async () => {
      child.kill();
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      jobs: { type: 'string', default: '3000' },
      inflight: { type: 'string', default: '16' },
      slots: { type: 'string', default: '8' },
      spawns: { type: 'string', default: '300' },
      messages: { type: 'string', default: 'both' },
    },
  });
  const modes: Mode[] = values.messages === 'both' ? ['single', 'batched'] : [values.messages as Mode];
  if (!modes.every((m) => m === 'single' || m === 'batched')) throw new Error('--messages: single, batched or both');
  const [jobs, inflight, slots, spawns] = [values.jobs, values.inflight, values.slots, values.spawns].map(Number) as [number, number, number, number];
  const cpus = os.cpus().length;

  let bare: SpawnLoop | undefined;
  for (let i = 0; i < 3; i++) {
    const b = await bareSpawnLoop(spawns, 8);
    if (!bare || b.rate > bare.rate) bare = b;
  }
  const nats = await startNats();
  const env = createTestEnv();
  await ensureDatabase(env.databaseUrl);
  const runs: FloorRun[] = [];
  try {
    for (const mode of modes) runs.push(await runFloor(nats, env.databaseUrl, mode, jobs, inflight, slots));
  } finally {
    await dropDatabase(env.databaseUrl);
    await nats.stop();
  }

  const ms = (x: number) => `${x.toFixed(2)} ms`;
  const b = bare!;
  const spawnMs = b.loopMs + b.jobMs;
  const budget = (cpus * 1000) / (0.8 * b.rate);
  const out = [
    `machine: ${cpus} CPU (${os.cpus()[0]?.model ?? 'unknown'}), Node ${process.version}, ${os.platform()} ${os.release()}; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`,
    `bare loop, /bin/sh -c true 8 at a time, best of 3 × ${spawns}: ${b.rate.toFixed(0)} /s`,
    `  CPU per spawn: the loop ${ms(b.loopMs)} + the job's processes ${ms(b.jobMs)} = ${ms(spawnMs)}, ${((spawnMs * b.rate) / 1000).toFixed(2)} of ${cpus} cores (the whole machine: ${((b.machineMs * b.rate) / 1000).toFixed(2)} busy)`,
    `budget at 0.8× the bare loop: ${cpus} cores / (0.8 × ${b.rate.toFixed(0)} /s) = ${ms(budget)} of CPU per job, for everything`,
  ];
  for (const r of runs) {
    const floor = sum(Object.values(r.perJob));
    const need = floor + spawnMs;
    out.push(
      '',
      `floor, ${r.mode === 'single' ? 'one message per execution (the protocol)' : 'messages batched per turn (not the protocol)'}: ${jobs} jobs, ${inflight} in flight, ${slots} slots: ${r.rate.toFixed(0)} jobs/s`,
      `  per job: ${r.traffic.statements.toFixed(2)} statements, ${r.traffic.natsIn.toFixed(2)} messages into nats-server and ${r.traffic.natsOut.toFixed(2)} out`,
      `  CPU per job: ${Object.entries(r.perJob).map(([k, v]) => `${k} ${ms(v)}`).join(', ')}; total ${ms(floor)} (rest of the machine meanwhile ${ms(r.restMs)})`,
      `  floor + the bare loop's CPU per spawn = ${ms(floor)} + ${ms(spawnMs)} = ${ms(need)}: ${need <= budget ? 'within' : 'OVER'} the budget; at most ${((cpus * 1000) / need / b.rate).toFixed(2)}× the bare loop with every core busy`,
    );
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);

// What a team notices after a month of use: a database holding about 1,000,000 executions and
// 50,000,000 log lines (one execution of 2,000,000), and the requests users make every day timed
// against it. See volume.md for the figures.
//
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/hodei_volume tsx volume.ts build [--executions N] [--big-lines N]
//   tsx volume.ts time [--wm http://127.0.0.1:8082] [--orch http://127.0.0.1:8080] [--runs 5] [--only executions]
//
// `build` applies the services' own migrations (the files each service runs at start), then fills
// their schemas with generate_series, a few days of executions per statement so that each holds
// the database for well under a minute; executions n = 1..N are spread over 30 days, 85% completed,
// 10% failed, the rest cancelled / timed_out / lost, the newest 50 queued or running, 4 in 5 of
// one of 2,000 jobs, on 50 workers; execution n has n % 97 lines (48 on average), and one
// completed execution (the `big` one `time` reads) has --big-lines.
// `time` runs each request --runs times against running services on that database and prints the
// median and the slowest in ms, with the rows the answer held.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createLogger, createPool, ensureDatabase, migrate, type Pool } from '@hodei/platform';

const here = dirname(fileURLToPath(import.meta.url));
const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    executions: { type: 'string', default: '1000000' },
    'big-lines': { type: 'string', default: '2000000' },
    wm: { type: 'string', default: 'http://127.0.0.1:8082' },
    orch: { type: 'string', default: 'http://127.0.0.1:8080' },
    runs: { type: 'string', default: '5' },
    only: { type: 'string' },
  },
});

const uuidFn = `CREATE OR REPLACE FUNCTION public.volume_uuid(t timestamptz, n bigint) RETURNS uuid LANGUAGE sql IMMUTABLE AS $$
  SELECT (lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0') || '7' || lpad(to_hex(n % 4096), 3, '0') || '8' || lpad(to_hex(n), 15, '0'))::uuid $$`;
const jobId = (n: string) => `volume_uuid($1::timestamptz - interval '39 days' + (1 + ${n} % 2000) * interval '1 minute', 100000 + 1 + ${n} % 2000)`;
const workerId = (n: string) => `volume_uuid($1::timestamptz - interval '35 days' + (1 + ${n} % 50) * interval '1 hour', 200000 + 1 + ${n} % 50)`;

/** The one execution with `--big-lines` lines: n % 97 = 0 (no lines of its own), completed. */
const bigN = (executions: number) => {
  let n = Math.floor(executions * 0.99);
  while (n % 97 !== 0 || n % 100 >= 85) n--;
  return n;
};

async function build(db: Pool, executions: number, bigLines: number): Promise<void> {
  const t0 = (await db.query<{ t: Date }>(`SELECT date_trunc('second', now()) AS t`)).rows[0]!.t;
  const step = async (what: string, sql: string, args: unknown[] = [t0]) => {
    const started = performance.now();
    const r = await db.query(sql, args);
    console.log(`${what}: ${r.rowCount ?? 0} rows, ${((performance.now() - started) / 1000).toFixed(1)} s`);
  };
  await db.query('SET synchronous_commit = off');
  await db.query(uuidFn);
  await db.query('TRUNCATE orchestrator.pipelines, orchestrator.jobs, orchestrator.job_executions CASCADE');
  await db.query('TRUNCATE worker_manager.executions, worker_manager.log_lines, worker_manager.workers, scheduler.workers, scheduler.queue');
  await step('pipelines', `INSERT INTO orchestrator.pipelines (id, name, created_at, updated_at)
    SELECT volume_uuid($1::timestamptz - interval '40 days' + g * interval '1 minute', g), 'pipeline-' || g,
           $1::timestamptz - interval '40 days' + g * interval '1 minute', $1::timestamptz - interval '40 days'
    FROM generate_series(1, 200) g`);
  await step('jobs', `INSERT INTO orchestrator.jobs (id, name, pipeline_id, command, priority, tags, status, created_at, updated_at)
    SELECT ${jobId('(g - 1)')}, 'job-' || g,
           CASE WHEN g % 4 <> 0 THEN volume_uuid($1::timestamptz - interval '40 days' + (1 + g % 200) * interval '1 minute', 1 + g % 200) END,
           'echo job ' || g, 1 + g % 15, ARRAY['team-' || (g % 10)], 'pending',
           $1::timestamptz - interval '39 days' + g * interval '1 minute', $1::timestamptz - interval '39 days'
    FROM generate_series(1, 2000) g`);
  await step('workers', `INSERT INTO worker_manager.workers (id, type, name, status, pid, capacity, started_at, stopped_at)
    SELECT ${workerId('(g - 1)')}, 'shell', 'w' || g, CASE WHEN g <= 45 THEN 'stopped' ELSE 'running' END, 10000 + g,
           '{"slots":8,"cpu_cores":2,"memory_bytes":4294967296}', $1::timestamptz - interval '35 days' + g * interval '1 hour',
           CASE WHEN g <= 45 THEN $1::timestamptz - interval '35 days' + (g + 1) * interval '1 hour' END
    FROM generate_series(1, 50) g`);
  await step('executions', `INSERT INTO worker_manager.executions (id, job_id, name, worker_id, attempt, status, priority, exit_code, message, spec,
      created_at, started_at, finished_at, duration_ms, last_seq)
    SELECT volume_uuid(c, n), CASE WHEN n % 5 <> 0 THEN ${jobId('n')} END, CASE WHEN n % 5 = 0 THEN 'adhoc' ELSE 'job-' || (1 + n % 2000) END,
           CASE WHEN st <> 'queued' THEN ${workerId('n')} END, 1, st, 5, CASE st WHEN 'completed' THEN 0 WHEN 'failed' THEN 1 END,
           CASE st WHEN 'lost' THEN 'worker went away' END,
           jsonb_build_object('name', 'job', 'command', 'echo ' || n, 'script', null, 'args', '[]'::jsonb, 'env', '{}'::jsonb, 'working_dir', null,
             'timeout_seconds', 600, 'priority', 5, 'resources', jsonb_build_object('cpu_cores', 1, 'memory_bytes', 268435456),
             'labels', '{}'::jsonb, 'max_retries', 0, 'retry_backoff_seconds', 10),
           c, CASE WHEN st <> 'queued' THEN c + interval '5 ms' END,
           CASE WHEN st NOT IN ('queued', 'running') THEN c + interval '5 ms' + (n % 60000) * interval '1 ms' END,
           CASE WHEN st NOT IN ('queued', 'running') THEN (n % 60000)::int END,
           CASE WHEN st NOT IN ('queued', 'running') THEN (CASE WHEN n = $3 THEN $4 ELSE n % 97 END)::int END
    FROM (SELECT n, $1::timestamptz - interval '30 days' + n * (interval '30 days' / $2) AS c,
                 CASE WHEN n > $2 - 50 THEN (CASE WHEN n % 2 = 0 THEN 'queued' ELSE 'running' END)
                      WHEN n % 100 < 85 THEN 'completed' WHEN n % 100 < 95 THEN 'failed' WHEN n % 100 < 97 THEN 'cancelled'
                      WHEN n % 100 < 99 THEN 'timed_out' ELSE 'lost' END AS st
          FROM generate_series(1, $2) n) s`, [t0, executions, bigN(executions), bigLines]);
  await step('orchestrator.job_executions', `INSERT INTO orchestrator.job_executions (execution_id, job_id, status, exit_code, started_at, finished_at, duration_ms, updated_at)
    SELECT id, job_id, status, exit_code, started_at, finished_at, duration_ms, coalesce(finished_at, created_at)
    FROM worker_manager.executions WHERE job_id IS NOT NULL`, []);
  await step('jobs status', `UPDATE orchestrator.jobs j SET status = e.status, updated_at = coalesce(e.finished_at, e.created_at)
    FROM (SELECT DISTINCT ON (job_id) job_id, status, finished_at, created_at FROM worker_manager.executions
          WHERE job_id IS NOT NULL ORDER BY job_id, created_at DESC) e
    WHERE j.id = e.job_id`, []);
  const lines = (range: string) => `INSERT INTO worker_manager.log_lines (execution_id, seq, stream, line, ts)
    SELECT e.id, s, CASE WHEN s % 10 = 0 THEN 2 ELSE 1 END,
           CASE WHEN s % 50 = 0 THEN 'ERROR step ' || s || ' failed to reach upstream host db-' || (s % 7) || ': connection refused'
                ELSE 'INFO step ' || s || ' processed batch of ' || (s * 37 % 1000) || ' records in ' || (s % 90) || ' ms' END,
           e.created_at + s * interval '1 ms'
    FROM worker_manager.executions e, generate_series(1, e.last_seq) s
    WHERE ${range} AND e.last_seq > 0 ORDER BY e.id, s`;
  for (let day = 0; day < 30; day += 3) {
    await step(`log lines, days ${day}..${day + 3}`, lines(`e.created_at >= $1::timestamptz - interval '30 days' + $2 * interval '1 day'
      AND e.created_at < $1::timestamptz - interval '30 days' + $3 * interval '1 day' AND e.last_seq < 1000`), [t0, day, day === 27 ? 31 : day + 3]);
  }
  for (let from = 0; from < bigLines; from += 500_000) {
    await step(`big execution, lines ${from + 1}..`, `INSERT INTO worker_manager.log_lines (execution_id, seq, stream, line, ts)
      SELECT e.id, s, CASE WHEN s % 10 = 0 THEN 2 ELSE 1 END,
             CASE WHEN s % 50 = 0 THEN 'ERROR step ' || s || ' failed to reach upstream host db-' || (s % 7) || ': connection refused'
                  ELSE 'INFO step ' || s || ' processed batch of ' || (s * 37 % 1000) || ' records in ' || (s % 90) || ' ms' END,
             e.created_at + s * interval '1 ms'
      FROM worker_manager.executions e, generate_series($2::int + 1, least($2::int + 500000, e.last_seq)) s
      WHERE e.last_seq >= 1000 AND e.created_at > $1::timestamptz - interval '31 days'`, [t0, from]);
  }
  await step('scheduler.queue (its 8 days of placements)', `INSERT INTO scheduler.queue (execution_id, job_id, priority, attempt, spec, created_at,
      enqueued_at, state, worker_id, cpu_cores, memory_bytes, claimed_at, done_at)
    SELECT id, job_id, priority, attempt, spec, created_at, created_at, 'done', worker_id, 1, 268435456, started_at, finished_at
    FROM worker_manager.executions WHERE finished_at > $1::timestamptz - interval '8 days'`);
  await step('scheduler.workers', `INSERT INTO scheduler.workers (id, type, name, status, labels, slots, cpu_cores, memory_bytes, registered_at, last_heartbeat_at)
    SELECT id, 'shell', name, CASE WHEN status = 'running' THEN 'offline' ELSE 'stopped' END, '{}', 8, 2, 4294967296, started_at, coalesce(stopped_at, started_at)
    FROM worker_manager.workers`, []);
  await step('analyze', 'ANALYZE', []);
  await step('vacuum', 'VACUUM worker_manager.executions, worker_manager.log_lines, orchestrator.job_executions', []);
}

interface Sample {
  ms: number;
  status: number;
  rows: string;
}

async function timeRequest(url: string, init: RequestInit & { sse?: boolean } = {}): Promise<Sample> {
  const started = performance.now();
  const res = await fetch(url, init);
  const text = await res.text();
  const ms = performance.now() - started;
  let rows = '';
  if (res.headers.get('x-total-count')) rows = `total ${res.headers.get('x-total-count')}`;
  const type = res.headers.get('content-type') ?? '';
  if (type.includes('event-stream')) rows = `${text.split('\nevent: log\n').length - 1} log events`;
  else if (type.includes('text/plain')) rows = `${text.split('\n').length - 1} lines`;
  else if (type.includes('json')) {
    const body = JSON.parse(text) as unknown;
    if (Array.isArray(body)) rows = `${body.length} items${rows ? `, ${rows}` : ''}`;
    else if (body && typeof body === 'object' && 'lines' in body) rows = `${(body as { lines: unknown[] }).lines.length} lines`;
  }
  return { ms, status: res.status, rows };
}

async function timeAll(wm: string, orch: string, runs: number): Promise<void> {
  const json = async <T>(url: string) => (await (await fetch(url)).json()) as T;
  const newest = await json<Array<{ id: string; job_id: string | null; worker_id: string | null }>>(`${wm}/api/v1/executions?status=completed&limit=1`);
  const withJob = await json<Array<{ job_id: string; worker_id: string }>>(`${wm}/api/v1/executions?status=failed&limit=5`);
  const jobId = withJob.find((e) => e.job_id)!.job_id;
  const workerId = withJob[0]!.worker_id;
  const big = (await json<Array<{ id: string; log_lines: number }>>(`${wm}/api/v1/executions?limit=1000&status=completed&offset=${process.env.VOLUME_BIG_OFFSET ?? 0}`)).find((e) => e.log_lines >= 1000);
  const bigId = process.env.VOLUME_BIG_ID ?? big?.id;
  if (!bigId) throw new Error('no execution with 1,000+ lines among the first 1,000 completed: set VOLUME_BIG_ID');
  const last = (await json<{ log_lines: number }>(`${wm}/api/v1/executions/${bigId}`)).log_lines;
  const job = (await json<Array<{ id: string }>>(`${orch}/api/v1/jobs?limit=1`))[0]!.id;
  const pipeline = (await json<Array<{ id: string }>>(`${orch}/api/v1/pipelines?limit=1`))[0]!.id;
  const text = { headers: { accept: 'text/plain' } };
  const targets: Array<[string, string, RequestInit?]> = [
    ['executions, first page', `${wm}/api/v1/executions`],
    ['executions ?status=failed', `${wm}/api/v1/executions?status=failed`],
    ['executions ?status=running', `${wm}/api/v1/executions?status=running`],
    ['executions ?job_id', `${wm}/api/v1/executions?job_id=${jobId}`],
    ['executions ?worker_id', `${wm}/api/v1/executions?worker_id=${workerId}`],
    ['executions ?worker_id&status=completed', `${wm}/api/v1/executions?worker_id=${workerId}&status=completed`],
    ['executions page 1000 (offset 49950)', `${wm}/api/v1/executions?limit=50&offset=49950`],
    ['executions ?status=completed page 1000', `${wm}/api/v1/executions?status=completed&limit=50&offset=49950`],
    ['executions ?limit=1000', `${wm}/api/v1/executions?limit=1000`],
    ['execution by id', `${wm}/api/v1/executions/${newest[0]!.id}`],
    ['big execution by id', `${wm}/api/v1/executions/${bigId}`],
    ['logs (first 10,000)', `${wm}/api/v1/executions/${bigId}/logs`],
    ['logs ?tail=100', `${wm}/api/v1/executions/${bigId}/logs?tail=100`],
    ['logs ?since_seq=last-1000', `${wm}/api/v1/executions/${bigId}/logs?since_seq=${last - 1000}`],
    ['logs ?stream=stderr&limit=1000', `${wm}/api/v1/executions/${bigId}/logs?stream=stderr&limit=1000`],
    ['logs ?stream=stderr&tail=100', `${wm}/api/v1/executions/${bigId}/logs?stream=stderr&tail=100`],
    ['logs ?grep=ERROR&limit=100', `${wm}/api/v1/executions/${bigId}/logs?grep=ERROR&limit=100`],
    ['logs ?grep=ERROR&tail=100', `${wm}/api/v1/executions/${bigId}/logs?grep=ERROR&tail=100`],
    ['logs ?grep=db-3:&grep_regex (all 10,000)', `${wm}/api/v1/executions/${bigId}/logs?grep=db-3:&grep_regex=true`],
    ['logs ?grep=no-such-text (whole log)', `${wm}/api/v1/executions/${bigId}/logs?grep=no-such-text`],
    ['logs text/plain (whole log)', `${wm}/api/v1/executions/${bigId}/logs`, text],
    ['logs text/plain ?tail=1000', `${wm}/api/v1/executions/${bigId}/logs?tail=1000`, text],
    ['SSE replay, Last-Event-ID = last-1000', `${wm}/api/v1/executions/${bigId}/logs/stream`, { headers: { 'last-event-id': String(last - 1000) } }],
    ['SSE replay ?tail=100', `${wm}/api/v1/executions/${bigId}/logs/stream?tail=100`],
    ['SSE replay, whole log', `${wm}/api/v1/executions/${bigId}/logs/stream`],
    ['execution events stream (ended)', `${wm}/api/v1/executions/${bigId}/events/stream`],
    ['jobs, first page', `${orch}/api/v1/jobs`],
    ['jobs ?status=failed', `${orch}/api/v1/jobs?status=failed`],
    ['jobs ?offset=1900', `${orch}/api/v1/jobs?offset=1900`],
    ['job by id', `${orch}/api/v1/jobs/${job}`],
    ['pipelines', `${orch}/api/v1/pipelines`],
    ['pipeline by id', `${orch}/api/v1/pipelines/${pipeline}`],
    ['stats', `${orch}/api/v1/stats`],
    ['cleanup dry run, 7 days', `${orch}/api/v1/cleanup`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"older_than_days":7,"dry_run":true}' }],
  ];
  console.log(`| request | rows | median ms | slowest ms |\n|---|---|---|---|`);
  for (const [name, url, init] of targets.filter(([name]) => !opts.only || name.includes(opts.only))) {
    const samples: Sample[] = [];
    for (let i = 0; i < runs; i++) samples.push(await timeRequest(url, init));
    const ms = samples.map((s) => s.ms).sort((a, b) => a - b);
    const bad = samples.find((s) => s.status >= 300);
    console.log(`| ${name} | ${bad ? `status ${bad.status}` : samples[0]!.rows} | ${ms[Math.floor(ms.length / 2)]!.toFixed(0)} | ${ms.at(-1)!.toFixed(0)} |`);
  }
}

const [command] = positionals;
if (command === 'build') {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('set DATABASE_URL to the database to fill (its schemas are emptied first)');
  await ensureDatabase(url);
  const logger = createLogger('volume', 'warn');
  for (const [service, schema] of [['orchestrator', 'orchestrator'], ['scheduler', 'scheduler'], ['worker-manager', 'worker_manager']] as const) {
    const pool = createPool(url, schema, logger, 1);
    await migrate(pool, schema, resolve(here, `../services/${service}/migrations`), logger);
    await pool.end();
  }
  const db = createPool(url, 'public', logger, 1);
  try {
    await build(db, Number(opts.executions), Number(opts['big-lines']));
  } finally {
    await db.end();
  }
} else if (command === 'time') {
  await timeAll(opts.wm!, opts.orch!, Number(opts.runs));
} else {
  console.error('usage: tsx volume.ts build | time (see the top of the file)');
  process.exit(2);
}

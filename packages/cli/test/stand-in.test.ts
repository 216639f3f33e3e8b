// hodei against a stand-in for the three services, answering as they do in moments that are hard to
// bring about on a real installation: a service away when a follow starts, a 503 "nothing was done,
// try again", a grep stopped by the server's time budget, a reader that goes away.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildCli, hodei, hodeiDone } from './helpers.js';

const EXECUTION = '01a23460-eb60-700b-814e-8735d2cf6bf5';
const JOB = '01a23460-eb60-700b-814e-8735d2cf6bf6';
const RUN = '01a2347c-93b1-7221-8abc-1e525b7482fe';
let server: Server | undefined;

beforeAll(() => buildCli(), 120_000);

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  server = undefined;
});

/** A stand-in for every service; `answer` gets each request (its route) and how many of that route came before, plus one. */
async function standIn(answer: (route: string, req: IncomingMessage, res: ServerResponse, nth: number) => void): Promise<Record<string, string>> {
  const seen = new Map<string, number>();
  server = createServer((req, res) => {
    const route = `${req.method} ${new URL(req.url ?? '/', 'http://x').pathname}`;
    seen.set(route, (seen.get(route) ?? 0) + 1);
    req.resume();
    req.on('end', () => answer(route, req, res, seen.get(route)!));
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return { HODEI_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { 'content-type': status >= 400 ? 'application/problem+json' : 'application/json', ...headers });
  res.end(JSON.stringify(body));
};
const unavailable = (res: ServerResponse, detail: string) =>
  json(res, 503, { type: 'about:blank', title: 'Service Unavailable', status: 503, detail }, { 'retry-after': '1' });
const event = (name: string, data: unknown, id?: number) => `${id === undefined ? '' : `id: ${id}\n`}event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
const line = (seq: number) => ({ seq, stream: 'stdout', line: `line ${seq}`, timestamp: new Date().toISOString() });

describe('pipelines follow', () => {
  it('waits out an orchestrator away when the follow starts, as logs -f does', async () => {
    const run = (status: string) => ({ id: RUN, pipeline_id: JOB, status, jobs: [{ job_id: JOB, name: 'only', status, execution_id: null }] });
    const env = await standIn((route, _req, res, nth) => {
      if (nth <= 2) return unavailable(res, 'the database is unavailable; try again');
      if (route === `GET /api/v1/pipeline-runs/${RUN}`) return json(res, 200, run('running'));
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(event('completed', run('completed'), 1));
    });
    const r = await hodeiDone(['pipelines', 'follow', RUN], env);
    expect(r.stderr).toContain('the database is unavailable; try again; retrying…');
    expect(r.code).toBe(0);
  }, 30_000);

  it('says why a job waits to start while worker-manager is unavailable, once, then follows it on', async () => {
    const B = '01a2347c-93b1-7221-8abc-1e525b7482ff';
    const why = 'worker-manager unavailable, retrying every 5 s for up to 5 min: http://127.0.0.1:8082 did not answer (connection refused)';
    const job = (status: string, message: string | null = null) => ({ job_id: B, name: 'b', status, execution_id: null, message });
    const run = (status: string, b: ReturnType<typeof job>) => ({ id: RUN, pipeline_id: JOB, status, jobs: [b] });
    const jobEvent = (b: ReturnType<typeof job>, id: number) => event('job', { type: 'job', run_id: RUN, pipeline_id: JOB, timestamp: new Date().toISOString(), ...b }, id);
    const env = await standIn((route, _req, res) => {
      if (route === `GET /api/v1/pipeline-runs/${RUN}`) return json(res, 200, run('running', job('starting')));
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(event('snapshot', run('running', job('starting')), 1));
      res.write(jobEvent(job('starting', why), 2));
      res.write(jobEvent(job('starting', why), 3));
      res.end(event('completed', run('failed', job('failed', 'could not start: worker-manager was unavailable for over 5 min (HODEI_PIPELINE_START_WAIT_MS): …')), 4));
    });
    const r = await hodeiDone(['pipelines', 'follow', RUN, '--no-timestamps'], env);
    const lines = r.stderr.split('\n').filter((l) => / b {2}/.test(l));
    expect(lines.map((l) => l.replace(/^\d\d:\d\d:\d\d\.\d{3} /, ''))).toEqual([
      'b  starting',
      `b  starting (${why})`,
      'b  failed (could not start: worker-manager was unavailable for over 5 min (HODEI_PIPELINE_START_WAIT_MS): …)',
    ]);
    expect(r.code).toBe(1);
  }, 30_000);
});

describe('followers and their reader', () => {
  it('logs -f exits 141 when its reader goes away (logs -f … | head), as run does', async () => {
    const env = await standIn((route, _req, res) => {
      if (route === `GET /api/v1/executions/${EXECUTION}`) return json(res, 200, { id: EXECUTION, job_id: JOB });
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      let seq = 0;
      const timer = setInterval(() => res.write(event('log', line(++seq), seq)), 5);
      res.on('close', () => clearInterval(timer));
    });
    const r = hodei(['logs', '-f', EXECUTION], env);
    await r.waitFor(/line 3/);
    r.child.stdout!.destroy();
    const done = await r.done;
    expect([done.code, done.signal]).toEqual([141, null]);
  }, 30_000);

  it('Ctrl-C on events -f exits 130, as a shell reports a command it interrupted', async () => {
    const env = await standIn((_route, _req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(event('connected', {}));
    });
    const r = hodei(['events', '-f'], env);
    await r.waitFor(/streaming events/);
    r.child.kill('SIGINT');
    const done = await r.done;
    expect([done.code, done.signal]).toEqual([130, null]);
  }, 30_000);
});

describe('run while worker-manager cannot take the execution', () => {
  const now = new Date().toISOString();
  const job = {
    id: JOB, name: 'true', description: null, pipeline_id: null, status: 'pending', command: 'true', script: null, args: [], env: {},
    working_dir: null, timeout_seconds: null, priority: 5, resources: {}, tags: [], labels: {}, max_retries: 0, retry_backoff_seconds: 10,
    depends_on: [], last_execution: null, created_at: now, updated_at: now,
  };

  it('waits and retries the execute per Retry-After, saying so once, and runs the one job it created', async () => {
    const env = await standIn((route, _req, res, nth) => {
      if (route === 'POST /api/v1/jobs') return json(res, 201, job);
      if (route === 'POST /api/v1/execute')
        return nth <= 3 ? unavailable(res, 'the message bus (NATS) is unavailable: nothing was done, try again') : json(res, 202, { id: EXECUTION, status: 'queued' });
      if (route === `GET /api/v1/executions/${EXECUTION}/logs/stream`) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        return void res.end(event('completed', { status: 'completed', exit_code: 0, duration_ms: 3 }));
      }
      json(res, 404, { status: 404, detail: `no ${route} here` });
    });
    const r = await hodeiDone(['run', '--', 'true'], env);
    expect(r.code).toBe(0);
    const said = r.stderr.split('\n').filter((l) => l.includes('NATS'));
    expect(said).toEqual([expect.stringMatching(/the message bus \(NATS\) is unavailable: nothing was done, try again; retrying for up to 60s…$/)]);
  }, 30_000);

  it('a 503 without Retry-After is not retried: the job is removed, exit 2', async () => {
    let executes = 0;
    let deleted = false;
    const env = await standIn((route, _req, res) => {
      if (route === 'POST /api/v1/jobs') return json(res, 201, job);
      if (route === 'POST /api/v1/execute') return (executes++, json(res, 503, { status: 503, detail: 'the worker took the message and then broke' }));
      if (route === `DELETE /api/v1/jobs/${JOB}`) return ((deleted = true), res.writeHead(204).end());
      json(res, 404, { status: 404, detail: `no ${route} here` });
    });
    const r = await hodeiDone(['run', '--', 'true'], env);
    expect([r.code, executes, deleted]).toEqual([2, 1, true]);
    expect(r.stderr).not.toContain('retrying');
  }, 30_000);
});

describe('logs --grep stopped by the server', () => {
  // worker-manager's words (routes/logs.ts)
  const TOO_LONG =
    'the regular expression took longer than 10000 ms to search this log: use a simpler pattern or a substring (grep_regex=false), or search fewer lines (since_seq, stream)';

  it("a 422 naming grep is one line, exit 1", async () => {
    const env = await standIn((route, _req, res) => {
      if (route === `GET /api/v1/executions/${EXECUTION}`) return json(res, 200, { id: EXECUTION, job_id: JOB });
      json(res, 422, {
        type: 'about:blank', title: 'Unprocessable Entity', status: 422,
        detail: `grep: ${TOO_LONG}`,
        errors: [{ path: 'grep', message: TOO_LONG }],
      });
    });
    const r = await hodeiDone(['logs', EXECUTION, '--grep', '(a+)+b'], env);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    // in the CLI's words: its flags, not the API's query parameters
    expect(r.stderr).toBe(
      'hodei: --grep: the search took longer than the worker-manager allows (10000 ms, HODEI_LOG_GREP_TIMEOUT_MS): use a simpler pattern, or search fewer lines (--since-seq, --stream)\n',
    );
  }, 30_000);

  it('an answer cut off (lines sent, or not even the headers) is an error naming the cut, not a partial answer with exit 0', async () => {
    let headersFirst = true;
    const env = await standIn((route, _req, res) => {
      if (route === `GET /api/v1/executions/${EXECUTION}`) return json(res, 200, { id: EXECUTION, job_id: JOB });
      if (!headersFirst) return void setTimeout(() => res.destroy(), 50);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(`{"execution_id":"${EXECUTION}","lines":[${JSON.stringify(line(1))},`);
      setTimeout(() => res.destroy(), 50);
    });
    for (const [first, args] of [[true, []], [true, ['--json']], [false, []]] as const) {
      headersFirst = first;
      const r = await hodeiDone(['logs', EXECUTION, '--grep', 'line', ...args], env);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/^hodei: the worker-manager at \S+ closed the connection before the end of its answer to GET \S+ \(connection closed\): the --grep search was likely stopped/);
    }
  }, 30_000);
});

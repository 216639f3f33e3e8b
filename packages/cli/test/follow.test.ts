// The followers against a service whose stream keeps breaking: each outage is timed and backed off
// on its own, a stream that is accepted but delivers nothing is not "back", and a 503 is waited out.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadCliConfig } from '../src/config.js';
import { UnreachableError } from '../src/errors.js';
import { followLogs } from '../src/follow.js';
import { HodeiClient } from '../src/http.js';
import { Output } from '../src/output.js';
import { followRun } from '../src/actions/pipeline-run.js';

const EXECUTION = '01a23460-eb60-700b-814e-8735d2cf6bf5';
let server: Server | undefined;

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  server = undefined;
});

/** A stand-in for every service: `answer` gets each request and how many came before it, plus one. */
async function service(answer: (req: IncomingMessage, res: ServerResponse, nth: number) => void) {
  let nth = 0;
  server = createServer((req, res) => answer(req, res, ++nth));
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return loadCliConfig({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, json: true }, {}, { stdout: {}, stderr: {} });
}

const workerManager = async (answer: Parameters<typeof service>[0]) => new HodeiClient(await service(answer));

const event = (name: string, data: unknown, id?: number) => `${id === undefined ? '' : `id: ${id}\n`}event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;

describe('followLogs', () => {
  it('reconnects as fast after the twelfth short outage as after the first', async () => {
    const resumedFrom: (string | undefined)[] = [];
    const client = await workerManager((req, res, nth) => {
      resumedFrom.push(req.headers['last-event-id'] as string | undefined);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(event('connected', { execution_id: EXECUTION, status: 'running' }));
      res.write(event('log', { seq: nth, stream: 'stdout', line: `line ${nth}`, timestamp: new Date().toISOString() }, nth));
      // twelve outages, each over as soon as hodei reconnects; then the end
      if (nth > 12) res.end(event('completed', { status: 'completed', exit_code: 0 }));
      else setTimeout(() => res.destroy(), 20);
    });
    const lines: string[] = [];
    let downs = 0;
    let backs = 0;
    const started = Date.now();
    const done = await followLogs(client, { executionId: EXECUTION, onLine: (l) => lines.push(l.line), onDown: () => downs++, onBack: () => backs++ });
    const took = Date.now() - started;
    expect(done.status).toBe('completed');
    expect(lines).toEqual(Array.from({ length: 13 }, (_, i) => `line ${i + 1}`));
    expect(resumedFrom).toEqual([undefined, ...Array.from({ length: 12 }, (_, i) => String(i + 1))]);
    expect([downs, backs]).toEqual([12, 12]);
    // 100 ms before each reconnect; with the back-off of the whole follow growing, 100 ms more each time (7.8 s)
    expect(took).toBeLessThan(4000);
  }, 20_000);

  it('gives up on a stream that is accepted but never delivers, however often it is accepted', async () => {
    let accepted = 0;
    const client = await workerManager((_req, res) => {
      accepted++;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      setTimeout(() => res.destroy(), 10);
    });
    const started = Date.now();
    const followed = followLogs(client, { executionId: EXECUTION, onLine: () => undefined, giveUpAfterMs: 1000, waitFromStart: true });
    await expect(followed).rejects.toThrow(UnreachableError);
    await expect(followed).rejects.toThrow(/log stream kept breaking/);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(accepted).toBeGreaterThan(2);
  }, 20_000);
});

describe('followRun (pipelines follow)', () => {
  it('waits out an orchestrator answering 503 on a reconnect, and resumes after the last event', async () => {
    const RUN = '01a2347c-93b1-7221-8abc-1e525b7482fe';
    const run = (status: string) => ({ id: RUN, pipeline_id: EXECUTION, status, jobs: [{ job_id: EXECUTION, name: 'only', status: status === 'running' ? 'queued' : status, execution_id: null }] });
    const resumedFrom: (string | undefined)[] = [];
    const config = await service((req, res, nth) => {
      resumedFrom.push(req.headers['last-event-id'] as string | undefined);
      if (nth === 2 || nth === 3) {
        res.writeHead(503, { 'content-type': 'application/problem+json' });
        return void res.end(JSON.stringify({ type: 'about:blank', title: 'Service Unavailable', status: 503, detail: 'the database is unavailable; try again' }));
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      if (nth === 1) {
        res.write(event('snapshot', run('running'), 7));
        setTimeout(() => res.destroy(), 20);
      } else res.end(event('completed', run('completed'), 8));
    });
    const said: string[] = [];
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation((text) => (said.push(String(text)), true));
    try {
      const done = await followRun({ config, client: new HodeiClient(config), out: new Output(config) }, RUN, { timestamps: false });
      expect(done.status).toBe('completed');
    } finally {
      stderr.mockRestore();
    }
    expect(resumedFrom).toEqual([undefined, '7', '7', '7']);
    // once per outage, also with --json: the break, then that it is back
    expect(said).toEqual(["the run's event stream broke; retrying…\n", "the run's event stream is back\n"]);
  }, 20_000);
});

// followLogs against a worker-manager whose log stream keeps breaking: each outage is timed and
// backed off on its own, and a stream that is accepted but delivers nothing is not "back".
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { loadCliConfig } from '../src/config.js';
import { UnreachableError } from '../src/errors.js';
import { followLogs } from '../src/follow.js';
import { HodeiClient } from '../src/http.js';

const EXECUTION = '01a23460-eb60-700b-814e-8735d2cf6bf5';
let server: Server | undefined;

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  server = undefined;
});

async function workerManager(answer: (req: IncomingMessage, res: ServerResponse, nth: number) => void): Promise<HodeiClient> {
  let nth = 0;
  server = createServer((req, res) => answer(req, res, ++nth));
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return new HodeiClient(loadCliConfig({}, { HODEI_WORKER_MANAGER_URL: url }, { stdout: {}, stderr: {} }));
}

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

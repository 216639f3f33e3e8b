import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeJson, encodeJson, newId } from '@hodei/platform';
import type { AssignmentAck } from '@hodei/types';
import { setup, spec, startAgentProcess, waitFor } from './harness.js';

let h: Awaited<ReturnType<typeof setup>>;
/** Where the tests leave files for their jobs; removed with everything in it after the file. */
let scratch = '';
beforeAll(async () => {
  scratch = mkdtempSync(path.join(os.tmpdir(), 'hodei-lifecycle-'));
  h = await setup();
});
afterAll(async () => {
  await h.teardown();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('drain and stop', () => {
  it('drain: the running job finishes, new work is refused, then the worker is done', async () => {
    const w = await h.start();
    const beats: string[] = [];
    const sub = h.bus.nc.subscribe(h.bus.subjects.heartbeat(w.id), {
      callback: (_e, m) => void beats.push(JSON.parse(new TextDecoder().decode(m.data)).status),
    });
    // the job runs until the test lets it end
    const release = path.join(scratch, 'release');
    const run = await h.assign({ command: `while [ ! -e ${release} ]; do sleep 0.05; done; echo finished` }, { to: w });
    await run.running;
    expect(await h.control(w, { action: 'drain' })).toEqual({ ok: true });
    const refused = await h.assign({ command: 'true' }, { to: w });
    expect(refused.ack).toEqual({ accepted: false, reason: 'worker is draining' });
    let done = false;
    void w.done.then(() => (done = true));
    expect(await waitFor(() => beats.includes('draining'))).toBe(true);
    await new Promise((r) => setTimeout(r, 200));
    expect(done).toBe(false); // still waiting for the running job
    writeFileSync(release, '');
    const final = await run.final;
    expect(final.status).toBe('completed');
    expect(run.lines.map((l) => l.line)).toEqual(['finished']);
    await w.done;
    sub.unsubscribe();
  });

  it('drain of an idle worker is done at once, and it takes no more work', async () => {
    const w = await h.start();
    const started = Date.now();
    await w.drain();
    expect(Date.now() - started).toBeLessThan(3000);
    await expect(h.assign({ command: 'true' }, { to: w })).rejects.toThrow(/no responders/);
  });

  it('force stop cancels the running jobs, then the worker is done', async () => {
    const w = await h.start();
    const a = await h.assign({ command: 'sleep 30' }, { to: w });
    const b = await h.assign({ command: 'trap "" TERM; while :; do sleep 0.05; done' }, { to: w });
    await Promise.all([a.running, b.running]);
    expect(await h.control(w, { action: 'stop', force: true })).toEqual({ ok: true });
    const [fa, fb] = await Promise.all([a.final, b.final]);
    // the message says why: nobody cancelled these jobs themselves
    expect(fa).toMatchObject({ status: 'cancelled', message: 'cancelled: its worker was stopped with force' });
    expect(fb).toMatchObject({ status: 'cancelled', signal: 'SIGKILL', message: 'cancelled: its worker was stopped with force' });
    await w.done;
  });

  it('every assignment sent while it stops gets an answer or finds nobody subscribed, none goes unanswered (the scheduler would count it taken)', async () => {
    const id = newId();
    const w = startAgentProcess(h.env.natsPrefix, id);
    await w.ready;
    const outcomes: string[] = [];
    let sending = true;
    const flood = (async () => {
      while (sending) {
        for (let i = 0; i < 20; i++) {
          const ask = h.bus.nc
            .request(h.bus.subjects.assign(id), encodeJson({ execution_id: newId(), job_id: null, attempt: 1, spec: spec({ command: 'sleep 5' }) }), { timeout: 1000 })
            .then((m) => ((decodeJson(m.data) as AssignmentAck).accepted ? 'accepted' : 'refused'), (err: Error) => (/no responders/i.test(err.message) ? 'nobody' : err.message));
          void ask.then((o) => outcomes.push(o));
        }
        await new Promise((r) => setTimeout(r, 1));
      }
    })();
    await new Promise((r) => setTimeout(r, 100));
    await h.bus.nc.request(h.bus.subjects.control(id), encodeJson({ action: 'stop', force: true }), { timeout: 5000 });
    await w.exit;
    sending = false;
    await flood;
    await new Promise((r) => setTimeout(r, 1100));
    expect(outcomes.filter((o) => o !== 'refused' && o !== 'nobody' && o !== 'accepted')).toEqual([]);
    expect(outcomes).toContain('nobody');
  });

  it('stop() without force drains', async () => {
    const w = await h.start();
    const run = await h.assign({ command: 'sleep 0.2' }, { to: w });
    await run.running;
    await w.stop();
    expect((await run.final).status).toBe('completed');
  });
});

describe('one agent per worker id', () => {
  it('a second agent given the id of a running one refuses to start, saying so, and the job placed on that id runs once', async () => {
    const w = await h.start();
    await expect(h.start({ id: w.id })).rejects.toThrow(
      new RegExp(`another worker agent already runs as worker ${w.id} \\(pid ${process.pid} on ${os.hostname()}\\)`),
    );
    const marker = path.join(scratch, `once-${w.id}`);
    const run = await h.assign({ command: `echo run >> ${marker}` }, { to: w });
    expect((await run.final).status).toBe('completed');
    await new Promise((r) => setTimeout(r, 200));
    expect(readFileSync(marker, 'utf8')).toBe('run\n');
  });

  it('a second agent given the id of one that drains waits for it to exit, then takes over', async () => {
    const w = await h.start();
    const release = path.join(scratch, `release-${w.id}`);
    const run = await h.assign({ command: `while [ ! -e ${release} ]; do sleep 0.05; done` }, { to: w });
    await run.running;
    void w.drain();
    let started = false;
    const next = h.start({ id: w.id }).then((n) => ((started = true), n));
    await new Promise((r) => setTimeout(r, 500));
    expect(started).toBe(false);
    writeFileSync(release, '');
    expect((await run.final).status).toBe('completed');
    const successor = await next;
    const after = await h.assign({ command: 'true' }, { to: successor });
    expect((await after.final).status).toBe('completed');
  });
});

describe('registration', () => {
  it('registers with the scheduler, retrying until it answers, with the bearer token', async () => {
    const requests: Array<{ body: Record<string, unknown>; auth: string | undefined }> = [];
    const deletes: Array<{ url: string | undefined; auth: string | undefined }> = [];
    let failures = 2;
    const server = http.createServer((req, res) => {
      let data = '';
      req.on('data', (c) => (data += c));
      req.on('end', () => {
        if (req.method === 'DELETE') {
          deletes.push({ url: req.url, auth: req.headers.authorization });
          res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
          return;
        }
        requests.push({ body: JSON.parse(data), auth: req.headers.authorization });
        if (failures-- > 0) {
          res.writeHead(503).end();
          return;
        }
        res.writeHead(201, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const id = newId();
    const w = await h.start({
      id,
      registerWithScheduler: true,
      schedulerUrl: `http://127.0.0.1:${port}`,
      apiToken: 'tok',
      name: 'w1',
      labels: { pool: 'gpu' },
      capacity: { slots: 2, cpu_cores: 1.5, memory_bytes: 1000 },
    });
    try {
      expect(w.id).toBe(id);
      const until = Date.now() + 5000;
      while (requests.length < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      expect(requests).toHaveLength(3);
      expect(requests[2]!.auth).toBe('Bearer tok');
      expect(requests[2]!.body).toMatchObject({
        id,
        type: 'shell',
        name: 'w1',
        labels: { pool: 'gpu' },
        capacity: { slots: 2, cpu_cores: 1.5, memory_bytes: 1000 },
        pid: process.pid,
      });
      expect(typeof requests[2]!.body.host).toBe('string');
      await new Promise((r) => setTimeout(r, 300));
      expect(requests).toHaveLength(3); // registered: no more attempts
      expect(deletes).toHaveLength(0);
      await w.stop();
      // leaving cleanly deregisters
      expect(deletes).toEqual([{ url: `/api/v1/workers/${id}`, auth: 'Bearer tok' }]);
    } finally {
      await w.stop();
      server.close();
    }
  });
});

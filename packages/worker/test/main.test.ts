// The agent as its own OS process: `node dist/main.js`, configured from the environment.
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeJson, freePort, newId } from '@hodei/platform';
import { setup, startAgentProcess, waitFor } from './harness.js';
import { NATIVE_SPAWNER } from '../src/spawn.js';

let h: Awaited<ReturnType<typeof setup>>;
beforeAll(async () => {
  h = await setup();
});
afterAll(async () => {
  await h.teardown();
});

const startAgent = (id: string, extra: Record<string, string> = {}, ownGroup = false) =>
  startAgentProcess(h.env.natsPrefix, id, { HODEI_HEARTBEAT_INTERVAL_MS: '100', HODEI_KILL_GRACE_MS: '300', ...extra }, ownGroup);

describe('dist/main.js', () => {
  it('SIGTERM drains: the running job completes, then the process exits 0', async () => {
    const id = newId();
    const agent = startAgent(id);
    await agent.ready;
    const run = await h.assign({ command: 'sleep 0.5; echo done' }, { to: { id } });
    expect(run.ack.accepted).toBe(true);
    await run.running;
    agent.proc.kill('SIGTERM');
    const final = await run.final;
    expect(final.status).toBe('completed');
    expect(await agent.exit).toBe(0);
  });

  it('Ctrl-C in a terminal (SIGINT to its whole process group) drains the same way', async () => {
    const id = newId();
    const agent = startAgent(id, {}, true);
    await agent.ready;
    const run = await h.assign({ command: 'sleep 0.5; echo done' }, { to: { id } });
    await run.running;
    process.kill(-agent.proc.pid!, 'SIGINT');
    const final = await run.final;
    expect(final.status).toBe('completed');
    expect(run.lines.map((l) => l.line)).toEqual(['done']);
    expect(await agent.exit).toBe(0);
  });

  it('a second signal force-stops: the job is cancelled, exit 0', async () => {
    const id = newId();
    const agent = startAgent(id);
    await agent.ready;
    const run = await h.assign({ command: 'sleep 30' }, { to: { id } });
    await run.running;
    agent.proc.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    agent.proc.kill('SIGINT');
    const final = await run.final;
    expect(final.status).toBe('cancelled');
    expect(await agent.exit).toBe(0);
  });

  it('its spawner process does not outlive it (kill -9)', async () => {
    const agent = startAgent(newId());
    await agent.ready;
    const pid = agent.proc.pid!;
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(' ').map(Number);
    const spawner = children.find((c) => readFileSync(`/proc/${c}/cmdline`, 'latin1').startsWith(NATIVE_SPAWNER));
    expect(spawner).toBeDefined();
    agent.proc.kill('SIGKILL');
    await agent.exit;
    const deadline = Date.now() + 3000;
    while (existsSync(`/proc/${spawner}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(existsSync(`/proc/${spawner}`)).toBe(false);
  });

  it('says so while NATS does not answer, and a signal then stops it at once (exit 0)', async () => {
    const url = `nats://127.0.0.1:${await freePort()}`; // nothing listens there
    const agent = startAgent(newId(), { NATS_URL: url });
    try {
      const deadline = Date.now() + 10_000;
      while (!agent.stdout().includes(`NATS at ${url} does not answer; waiting for it (check NATS_URL, or hodei worker --nats)`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(agent.stdout()).toContain(`NATS at ${url} does not answer; waiting for it (check NATS_URL, or hodei worker --nats)`);
      agent.proc.kill('SIGTERM');
      expect(await Promise.race([agent.exit, new Promise((r) => setTimeout(() => r('still running'), 5000))])).toBe(0);
      expect(agent.stdout()).toContain(`stopped while waiting for NATS at ${url}`);
    } finally {
      agent.proc.kill('SIGKILL');
    }
  });

  it('exits 1 naming a bad variable', async () => {
    const agent = startAgent(newId(), { HODEI_WORKER_SLOTS: 'lots' });
    let err = '';
    agent.proc.stdout!.on('data', (c: Buffer) => (err += c.toString()));
    expect(await agent.exit).toBe(1);
    expect(err).toContain('HODEI_WORKER_SLOTS');
  });

  it('exits 1 naming a NATS_URL that is no NATS address (an http:// URL, a port that is no number)', async () => {
    for (const url of ['http://127.0.0.1:4222', 'nats://127.0.0.1:nats']) {
      const agent = startAgent(newId(), { NATS_URL: url });
      try {
        expect(await Promise.race([agent.exit, new Promise((r) => setTimeout(() => r('still running'), 10_000))])).toBe(1);
        expect(agent.stdout()).toContain('invalid worker configuration: NATS_URL: must be a NATS server address such as nats://127.0.0.1:4222');
      } finally {
        agent.proc.kill('SIGKILL');
      }
    }
  });

  it('exits 1 naming a memory the registry would refuse (over 2^50 bytes)', async () => {
    const agent = startAgent(newId(), { HODEI_WORKER_MEMORY_BYTES: String(2 ** 51) });
    try {
      expect(await Promise.race([agent.exit, new Promise((r) => setTimeout(() => r('still running'), 10_000))])).toBe(1);
      expect(agent.stdout()).toContain('HODEI_WORKER_MEMORY_BYTES');
    } finally {
      agent.proc.kill('SIGKILL');
    }
  });

  it('warns when no scheduler listens for its heartbeats (a wrong --prefix), and says when one answers again', async () => {
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(req.method === 'POST' ? 201 : 200, { 'content-type': 'application/json' }).end('{}'));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const id = newId();
    const answer = () =>
      h.bus.nc.subscribe(h.bus.subjects.heartbeat(id), { callback: (_err, msg) => msg.respond(encodeJson({ status: 'online', written_off: [] })) });
    let scheduler = answer();
    let agent: ReturnType<typeof startAgent> | undefined;
    const warning = `no scheduler listens for this worker's heartbeats under the NATS prefix '${h.env.natsPrefix}'`;
    try {
      agent = startAgent(id, { HODEI_SCHEDULER_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
      expect(await waitFor(() => agent!.stdout().includes('registered with the scheduler'), 10_000)).toBe(true);
      // answered: five heartbeat timeouts (300 ms) pass without the warning
      await new Promise((r) => setTimeout(r, 1500));
      expect(agent.stdout()).not.toContain(warning);
      scheduler.unsubscribe();
      expect(await waitFor(() => agent!.stdout().includes(warning), 10_000)).toBe(true);
      expect(agent.stdout().split(warning).length).toBe(2);
      scheduler = answer();
      expect(await waitFor(() => agent!.stdout().includes('a scheduler answers the heartbeats again'), 10_000)).toBe(true);
    } finally {
      scheduler.unsubscribe();
      agent?.proc.kill('SIGKILL');
      server.close();
    }
  });

  it('given the URL of another service as the scheduler\'s, exits 1 naming that service', async () => {
    // worker-manager has a POST /api/v1/workers too, and refuses the agent's body
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (req.url === '/health') return res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok","service":"worker-manager"}');
        res.writeHead(400, { 'content-type': 'application/problem+json' }).end('{"title":"Bad Request","status":400,"detail":"invalid body: id, host, pid"}');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    let agent: ReturnType<typeof startAgent> | undefined;
    try {
      agent = startAgent(newId(), { HODEI_SCHEDULER_URL: url });
      expect(await Promise.race([agent.exit, new Promise((r) => setTimeout(() => r('still running'), 10_000))])).toBe(1);
      expect(agent.stdout()).toContain(
        `${url} is the worker-manager, not the scheduler: point HODEI_SCHEDULER_URL (hodei worker --scheduler) at the scheduler (port 8081 by default)`,
      );
    } finally {
      agent?.proc.kill('SIGKILL');
      server.close();
    }
  });

  it('exits 1 when the scheduler refuses its registration (a wrong token), instead of idling unregistered', async () => {
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () =>
        res.writeHead(401, { 'content-type': 'application/problem+json' }).end('{"title":"Unauthorized","status":401,"detail":"invalid token"}'),
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    let agent: ReturnType<typeof startAgent> | undefined;
    try {
      agent = startAgent(newId(), { HODEI_SCHEDULER_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, HODEI_API_TOKEN: 'wrong' });
      expect(await Promise.race([agent.exit, new Promise((r) => setTimeout(() => r('still running'), 10_000))])).toBe(1);
      expect(agent.stdout()).toContain(
        "the scheduler refused the token (401: invalid token): HODEI_API_TOKEN (hodei worker --token) must be the services' HODEI_API_TOKEN",
      );
      agent = startAgent(newId(), { HODEI_SCHEDULER_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, HODEI_API_TOKEN: '' });
      expect(await Promise.race([agent.exit, new Promise((r) => setTimeout(() => r('still running'), 10_000))])).toBe(1);
      expect(agent.stdout()).toContain("the scheduler needs a token (401: invalid token): set HODEI_API_TOKEN (hodei worker --token) to the services' HODEI_API_TOKEN");
    } finally {
      agent?.proc.kill('SIGKILL');
      server.close();
    }
  });
});

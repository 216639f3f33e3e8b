// A worker cut off from NATS past the heartbeat timeout kills its jobs (reported `lost` once it is
// back), so the scheduler can place them elsewhere without one job running twice at once.
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Logger } from '@hodei/platform';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, NATS_URL, setup, waitFor } from './harness.js';

/** A TCP relay to the NATS server that the test can cut and restore. */
function relay(target: URL) {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 4222), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  return {
    listen: (port = 0) => new Promise<number>((r) => server.listen(port, '127.0.0.1', () => r((server.address() as AddressInfo).port))),
    /** The network goes silent: nothing is forwarded any more, no connection is closed. */
    freeze: () => {
      for (const s of sockets) s.pause();
      server.close();
    },
    cut: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        for (const s of sockets) s.destroy();
      }),
  };
}

let h: Awaited<ReturnType<typeof setup>>;
beforeAll(async () => {
  h = await setup();
});
afterAll(async () => {
  await h.teardown();
});

describe('losing NATS', () => {
  it('kills running jobs after the timeout and reports them lost on reconnect', async () => {
    const r = relay(new URL(NATS_URL));
    const port = await r.listen();
    const lostTimeoutMs = 2000;
    const w = await h.start({ natsUrl: `nats://127.0.0.1:${port}`, natsLostTimeoutMs: lostTimeoutMs });
    const run = await h.assign({ command: 'echo "pid $$"; sleep 30' }, { to: w });
    await run.running;
    expect(await waitFor(() => run.lines.length > 0)).toBe(true);
    const pid = Number(run.lines[0]!.line.slice(4));
    expect(alive(pid)).toBe(true);

    const cutAt = Date.now();
    await r.cut();
    await new Promise((res) => setTimeout(res, 300));
    expect(alive(pid)).toBe(true); // a short blip kills nothing
    expect(await waitFor(() => !alive(pid), lostTimeoutMs + 3000)).toBe(true);
    // counted from the last answer of the server, at most a heartbeat (100 ms) before the cut
    expect(Date.now() - cutAt).toBeGreaterThanOrEqual(lostTimeoutMs - 200);

    const r2 = relay(new URL(NATS_URL));
    await r2.listen(port);
    const final = await Promise.race([run.final, new Promise<null>((res) => setTimeout(() => res(null), 8000))]);
    expect(final).toMatchObject({ status: 'lost', last_seq: 1 });
    await w.stop({ force: true });
    await r2.cut();
  }, 20_000);

  it('kills running jobs after the timeout when the network goes silent (no disconnect seen), counted from the last contact', async () => {
    const r = relay(new URL(NATS_URL));
    const port = await r.listen();
    const lostTimeoutMs = 1500;
    const w = await h.start({ natsUrl: `nats://127.0.0.1:${port}`, natsLostTimeoutMs: lostTimeoutMs });
    const run = await h.assign({ command: 'echo "pid $$"; sleep 30' }, { to: w });
    await run.running;
    expect(await waitFor(() => run.lines.length > 0)).toBe(true);
    const pid = Number(run.lines[0]!.line.slice(4));
    const frozenAt = Date.now();
    r.freeze();
    // the scheduler counts it offline this long after the last heartbeat it got, and retries its jobs
    expect(await waitFor(() => !alive(pid), lostTimeoutMs + 3000)).toBe(true);
    expect(Date.now() - frozenAt).toBeGreaterThanOrEqual(lostTimeoutMs - 200);
    await r.cut();
    const r2 = relay(new URL(NATS_URL));
    await r2.listen(port);
    expect(await Promise.race([run.final, new Promise<null>((res) => setTimeout(() => res(null), 8000))])).toMatchObject({ status: 'lost' });
    await w.stop({ force: true });
    await r2.cut();
  }, 20_000);

  it('logs an outage once when publishing starts failing, without a stack, and once when it works again', async () => {
    const logged: { level: number; msg: string; err?: unknown }[] = [];
    const LEVELS = { debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;
    const logger = new Proxy({} as Logger, {
      get: (_t, key) => {
        if (key === 'child') return () => logger;
        const level = LEVELS[key as keyof typeof LEVELS];
        if (level === undefined) return undefined;
        return (obj: unknown, msg?: string) => {
          if (level >= LEVELS.info) logged.push(typeof obj === 'string' ? { level, msg: obj } : { level, msg: msg ?? '', ...(obj as object) });
        };
      },
    });
    const r = relay(new URL(NATS_URL));
    const port = await r.listen();
    const w = await h.start({ natsUrl: `nats://127.0.0.1:${port}`, natsLostTimeoutMs: 60_000, logger });
    const run = await h.assign({ command: 'i=0; while [ $i -lt 400 ]; do i=$((i+1)); echo "line $i"; sleep 0.05; done' }, { to: w });
    await run.running;
    expect(await waitFor(() => run.lines.length > 0)).toBe(true);

    await r.cut();
    // past the publish time-out (5 s): status and log publishes fail and are retried meanwhile
    expect(await waitFor(() => logged.some((l) => l.msg.startsWith('NATS unreachable')), 15_000)).toBe(true);
    await new Promise((res) => setTimeout(res, 1000));
    const r2 = relay(new URL(NATS_URL));
    await r2.listen(port);
    expect(await waitFor(() => logged.some((l) => l.msg.startsWith('NATS reachable again')), 10_000)).toBe(true);
    await w.stop({ force: true });
    await r2.cut();

    const warnings = logged.filter((l) => l.level >= 40);
    expect(warnings.map((l) => l.msg)).toEqual([
      'nats disconnected',
      'NATS unreachable: holding back status and log messages, retrying until it answers',
      'nats reconnected',
    ]);
    expect(warnings.filter((l) => l.err !== undefined)).toEqual([]);
    expect(logged.filter((l) => l.msg.startsWith('NATS reachable again'))).toHaveLength(1);
  }, 40_000);
});

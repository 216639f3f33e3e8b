// A worker cut off from NATS past the heartbeat timeout kills its jobs (reported `lost` once it is
// back), so the scheduler can place them elsewhere without one job running twice at once.
import net from 'node:net';
import type { AddressInfo } from 'node:net';
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
});

// NATS with authentication: the credentials in NATS_URL reach the server, for the services' bus and
// the worker agent's connection alike. A nats-server of this file's own, with a user or a token.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { connectBus, createLogger, freePort, natsServers } from '@hodei/platform';
import { connectNats } from '../../worker/src/connect.js';

const quiet = createLogger('nats-auth-test', 'silent');
const started: Array<{ proc: ChildProcess; dir: string }> = [];

async function natsWith(auth: string[]): Promise<number> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'hodei-nats-auth-'));
  const proc = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir, ...auth], {
    stdio: 'ignore',
    env: { PATH: `${process.env.PATH}:/usr/sbin:/usr/local/bin` },
  });
  started.push({ proc, dir });
  const deadline = Date.now() + 20_000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const sock = tcpConnect(port, '127.0.0.1');
      sock.once('connect', () => (sock.destroy(), resolve(true)));
      sock.once('error', () => resolve(false));
    });
    if (up) return port;
    if (Date.now() > deadline) throw new Error('nats-server did not listen');
    await new Promise((r) => setTimeout(r, 50));
  }
}

afterEach(async () => {
  for (const { proc, dir } of started.splice(0)) {
    const gone = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGKILL');
    await gone;
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('NATS credentials in NATS_URL', () => {
  it('splits them off the servers: user and password, a token, percent-encoded characters, several servers', () => {
    expect(natsServers('nats://127.0.0.1:4222')).toEqual({ servers: ['nats://127.0.0.1:4222'] });
    expect(natsServers('nats://hodei:s%40cret@nats:4222')).toEqual({ servers: ['nats://nats:4222'], user: 'hodei', pass: 's@cret' });
    expect(natsServers('tok3n@127.0.0.1:4222')).toEqual({ servers: ['127.0.0.1:4222'], token: 'tok3n' });
    expect(natsServers('nats://u:p@a:4222, nats://u:p@b:4222')).toEqual({ servers: ['nats://a:4222', 'nats://b:4222'], user: 'u', pass: 'p' });
  });

  it('reach a server that wants a user and password, or a token: the services and the worker agent connect', async () => {
    const userPort = await natsWith(['--user', 'hodei', '--pass', 's@cret']);
    const bus = await connectBus(`nats://hodei:s%40cret@127.0.0.1:${userPort}`, 'auth', 'nats-auth-test', quiet);
    expect((await bus.jsm.streams.names().next()).length).toBeGreaterThan(0);
    await bus.nc.close();
    await expect(connectBus(`nats://hodei:wrong@127.0.0.1:${userPort}`, 'auth', 'nats-auth-test', quiet)).rejects.toThrow(/Authorization Violation/);

    const tokenPort = await natsWith(['--auth', 'tok3n']);
    const nc = await connectNats(`nats://tok3n@127.0.0.1:${tokenPort}`, 'nats-auth-test', quiet);
    expect(nc.info?.auth_required).toBe(true);
    await nc.close();
  });
});

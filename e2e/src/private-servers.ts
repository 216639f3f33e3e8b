// Servers of a test's own, for scenarios that stop and restart them: the shared Postgres and NATS
// of this machine must never be restarted by a test.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './stack.js';

const run = promisify(execFile);

const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = tcpConnect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });

async function waitPort(port: number, open: boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await portOpen(port)) !== open) {
    if (Date.now() > deadline) throw new Error(`${what} did not ${open ? 'open' : 'close'} port ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function findNatsServer(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').concat('/usr/sbin', '/usr/local/bin')) {
    const p = join(dir, 'nats-server');
    if (dir && existsSync(p)) return p;
  }
  return undefined;
}

/** A nats-server with JetStream on a free port and a store dir of its own; kill() and start() again keep both. */
export async function startPrivateNats(bin: string) {
  const port = await freePort();
  const storeDir = mkdtempSync(join(tmpdir(), 'hodei-e2e-nats-'));
  let proc: ChildProcess | undefined;
  const running = () => proc !== undefined && proc.exitCode === null && proc.signalCode === null;
  const start = async () => {
    if (running()) return;
    proc = spawn(bin, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], { stdio: 'ignore' });
    await waitPort(port, true, 20_000, 'nats-server');
  };
  const kill = async (signal: NodeJS.Signals = 'SIGKILL') => {
    const p = proc;
    if (!p || !running()) return;
    const gone = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    p.kill(signal);
    await gone;
  };
  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    start,
    kill,
    stop: async () => {
      await kill('SIGTERM');
      rmSync(storeDir, { recursive: true, force: true });
    },
  };
}

const PG_BIN_DIRS = ['/usr/lib/postgresql/17/bin', '/usr/lib/postgresql/16/bin', '/usr/lib/postgresql/15/bin'];

export function findPostgresBin(): string | undefined {
  return PG_BIN_DIRS.find((d) => existsSync(join(d, 'initdb')) && existsSync(join(d, 'pg_ctl')));
}

/**
 * A PostgreSQL cluster of its own (initdb + pg_ctl of the machine's binaries) on a free port under
 * /tmp, trust auth on 127.0.0.1. As root it runs as the `postgres` OS user, as PostgreSQL requires.
 */
export async function startPrivatePostgres(binDir: string) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'hodei-e2e-pg-'));
  const data = join(dir, 'data');
  const asRoot = process.getuid?.() === 0;
  let uid: number | undefined;
  if (asRoot) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    uid = Number(stdout.trim());
    chownSync(dir, uid, Number(gid.trim()));
  }
  const pgCmd = (tool: string, args: string[]) =>
    asRoot ? run('runuser', ['-u', 'postgres', '--', join(binDir, tool), ...args]) : run(join(binDir, tool), args);
  await pgCmd('initdb', ['-D', data, '--auth=trust', '-U', 'postgres', '-E', 'UTF8']);
  const start = () =>
    pgCmd('pg_ctl', ['-D', data, '-l', join(dir, 'postgres.log'), '-w', '-t', '60', '-o', `-p ${port} -c listen_addresses=127.0.0.1 -k ${dir} -c fsync=off`, 'start']);
  /** `immediate`: no clean shutdown, like a crash; the next start recovers from the WAL. */
  const stopServer = (mode: 'immediate' | 'fast' = 'immediate') => pgCmd('pg_ctl', ['-D', data, '-m', mode, '-w', 'stop']);
  await start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    start: async () => {
      await start();
    },
    crash: async () => {
      await stopServer('immediate');
      await waitPort(port, false, 20_000, 'postgres');
    },
    stop: async () => {
      await stopServer('fast').catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

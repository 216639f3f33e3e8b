// Each service's and the worker agent's dist/main.js, started with a bad variable: one log line
// that names it, exit code 1, nothing connected.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const MAINS = ['services/orchestrator', 'services/scheduler', 'services/worker-manager', 'packages/worker'];

function run(main: string, env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [`${root}${main}/dist/main.js`], { env: { PATH: process.env.PATH, ...env } });
    let out = '';
    proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (out += c.toString()));
    proc.on('close', (code) => resolve({ code, out }));
  });
}

describe('main.js with a bad configuration value', () => {
  it.each(MAINS)('%s: one line naming the variable, exit code 1', async (main) => {
    const { code, out } = await run(main, { HODEI_HEARTBEAT_TIMEOUT_MS: 'soon', NATS_URL: 'nats://127.0.0.1:1', DATABASE_URL: 'postgres://127.0.0.1:1/none' });
    expect(code).toBe(1);
    const lines = out.trim().split('\n');
    expect(lines).toHaveLength(1);
    const entry = JSON.parse(lines[0]!) as { level: number; msg: string };
    expect(entry.level).toBe(60);
    expect(entry.msg).toMatch(/invalid (worker )?configuration: HODEI_HEARTBEAT_TIMEOUT_MS: /);
  });
});

// A job printing fast: hodei keeps up with the log stream instead of spending its time on one
// system call per line. Measured in CPU time (what the machine's load does not change much), against
// a bare Node client reading the same stream in the same run.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MAIN } from './helpers.js';
import { useStack } from './fixture.js';

const fx = useStack();
const { env, dir } = fx;

const LINES = 200_000;

/** CPU seconds (user + system) `command` and its children used: the shell's cutime and cstime once they ended.
 *  (Not execFileSync: the services run in this process.) */
async function cpuSeconds(command: string, args: string[]): Promise<number> {
  const { stdout: stat } = await promisify(execFile)('sh', ['-c', `${command}; cat /proc/$$/stat`, 'sh', ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NO_COLOR: '1', ...env },
    encoding: 'utf8',
  });
  const fields = stat.slice(stat.lastIndexOf(')') + 2).trim().split(' ');
  // after ')': state is field 3, cutime 16 and cstime 17
  return (Number(fields[16 - 3]) + Number(fields[17 - 3])) / 100;
}

describe('a job printing fast', () => {
  it(`${LINES} lines: logs -f into a pipe costs hodei at most 4x the CPU of a bare client reading the stream, and every line arrives`, async () => {
    const started = await fetch(`${fx.stack.workerManager.url}/api/v1/execute`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'fast', command: `seq 1 ${LINES}` }),
    });
    const { id } = (await started.json()) as { id: string };
    for (let status = ''; status !== 'completed'; await new Promise((r) => setTimeout(r, 200))) {
      status = ((await (await fetch(`${fx.stack.workerManager.url}/api/v1/executions/${id}`)).json()) as { status: string }).status;
      expect(['queued', 'running', 'completed']).toContain(status);
    }
    const stream = `${fx.stack.workerManager.url}/api/v1/executions/${id}/logs/stream`;
    const bare = await cpuSeconds(`node -e 'fetch(process.argv[1]).then(async (r) => { for await (const c of r.body); })' "$1"`, [stream]);
    const out = join(dir, 'fast.out');
    const hodei = await cpuSeconds(`node "$1" logs -f --raw "$2" 2>/dev/null | cat > "$3"`, [MAIN, id, out]);

    const text = readFileSync(out, 'utf8');
    expect(text.length).toBe(Array.from({ length: LINES }, (_, i) => `${i + 1}\n`).join('').length);
    expect(text.split('\n').slice(0, -1).every((l, i) => l === String(i + 1))).toBe(true);
    // before: about 6x (5.0 s against 0.8 s here), one write per line
    expect(hodei, `hodei ${hodei} s, a bare client ${bare} s`).toBeLessThan(4 * bare);
  }, 120_000);
});

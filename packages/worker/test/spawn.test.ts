// The spawners on their own: same behaviour on the main thread and on the spawner thread.
import { describe, expect, it } from 'vitest';
import { createLogger } from '@hodei/platform';
import { commandRequest, InlineSpawner, ThreadSpawner, type JobHandle, type Spawner } from '../src/spawn.js';

const logger = createLogger('test', 'silent');
const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

async function collect(job: JobHandle) {
  const out = { stdout: '', stderr: '' };
  job.onData((stream, chunk) => (out[stream] += chunk.toString()));
  const exit = await job.exited;
  await job.closed;
  job.destroy();
  return { exit, out };
}

for (const [name, make] of [
  ['inline', () => new InlineSpawner()],
  ['thread', () => new ThreadSpawner(logger)],
] as Array<[string, () => Spawner]>) {
  describe(`${name} spawner`, () => {
    it('runs a process in its own group and relays both streams and the exit code', async () => {
      const s = make();
      const job = await s.spawn(commandRequest('echo "$1"; echo err >&2; ps -o pgid= -p $$; exit 4', ['arg'], env, undefined));
      const { exit, out } = await collect(job);
      expect(exit).toEqual({ code: 4, signal: null });
      expect(out.stdout.split('\n')[0]).toBe('arg');
      expect(Number(out.stdout.split('\n')[1])).toBe(job.pid); // process group id = its own pid
      expect(out.stderr).toBe('err\n');
      await s.close();
    });

    it('relays a large output byte for byte', async () => {
      const s = make();
      const job = await s.spawn(commandRequest('seq 1 200000', [], env, undefined));
      const { out } = await collect(job);
      expect(out.stdout).toBe(Array.from({ length: 200_000 }, (_, i) => i + 1).join('\n') + '\n');
      await s.close();
    });

    it('rejects with the OS error code when the process cannot start', async () => {
      const s = make();
      await expect(s.spawn(commandRequest('true', [], env, '/nonexistent/dir'))).rejects.toMatchObject({ code: 'ENOENT' });
      await s.close();
    });
  });
}

describe('thread spawner', () => {
  it('spawns on the main thread once its thread is gone', async () => {
    const s = new ThreadSpawner(logger);
    await s.close();
    const job = await s.spawn(commandRequest('echo still', [], env, undefined));
    const { exit, out } = await collect(job);
    expect(exit.code).toBe(0);
    expect(out.stdout).toBe('still\n');
  });

  it('ends what it watched when its thread dies, instead of hanging', async () => {
    const s = new ThreadSpawner(logger);
    const job = await s.spawn(commandRequest('sleep 5', [], env, undefined));
    await s.close();
    const exit = await job.exited;
    expect(exit.error).toMatch(/spawner thread/);
    process.kill(-job.pid, 'SIGKILL');
  });
});

// `hodei worker` whose output has no reader any more (`hodei worker | head -1`, a supervisor that
// died): it goes on as the standalone agent does, and a SIGTERM still drains it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCli, hodei, hodeiDone } from './helpers.js';
import { startStack, type Stack } from './stack.js';

let stack: Stack;

beforeAll(async () => {
  buildCli();
  stack = await startStack({ slots: 1 });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

describe('hodei worker without a reader of its output', () => {
  it('lets the running job finish on SIGTERM and exits 0, instead of dying with it at its next write', async () => {
    const agent = hodei(
      ['worker', '--nats', process.env.NATS_URL ?? 'nats://127.0.0.1:4222', '--prefix', stack.env.natsPrefix, '--label', 'pool=unread', '--slots', '1'],
      stack.cliEnv,
    );
    try {
      await agent.waitFor(/running with 1 slots/, 20_000);
      agent.child.stdout!.destroy();
      agent.child.stderr!.destroy();

      const submitted = await hodeiDone(
        ['run', '--detach', '--json', '--label', 'pool=unread', '--command', 'echo started; sleep 2; echo finished'],
        stack.cliEnv,
      );
      expect(submitted.code).toBe(0);
      const { execution } = JSON.parse(submitted.stdout) as { execution: string };
      const follow = hodei(['logs', '-f', '--json', execution], stack.cliEnv);
      await follow.waitFor(/started/, 20_000);

      agent.child.kill('SIGTERM');
      const logs = await follow.done;
      const objects = logs.stdout.trim().split('\n').map((l) => JSON.parse(l) as { line?: string; status?: string; exit_code?: number | null });
      expect(objects.filter((o) => o.line !== undefined).map((o) => o.line)).toEqual(['started', 'finished']);
      expect(objects.at(-1)).toMatchObject({ status: 'completed', exit_code: 0 });
      expect(logs.code).toBe(0);

      const exited = await agent.done;
      expect(exited).toMatchObject({ code: 0, signal: null });
    } finally {
      agent.child.kill('SIGKILL');
    }
  }, 60_000);
});

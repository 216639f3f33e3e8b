// `hodei run` while the scheduler is away (stopped, restarting): the execution is accepted and waits
// with no reason of the scheduler's; hodei says the scheduler does not answer instead of sitting
// silent, and the job runs once a scheduler is back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningService } from '@hodei/platform';
import { startScheduler } from '../../../services/scheduler/src/service.js';
import { buildCli, hodei } from './helpers.js';
import { startStack, type Stack } from './stack.js';

let stack: Stack;
let back: RunningService | undefined;
beforeAll(async () => {
  buildCli();
  stack = await startStack({ slots: 2 });
}, 120_000);
afterAll(async () => {
  await back?.stop();
  await stack?.stop();
});

describe('hodei run while the scheduler is away', () => {
  it('says the scheduler does not answer, once, then runs the job when it is back', async () => {
    const { port, url } = stack.scheduler;
    await stack.scheduler.stop();
    const run = hodei(['run', '--name', 'later', '--command', 'echo ran'], stack.cliEnv);
    await run.waitFor(new RegExp(`^waiting: the scheduler at ${url} does not answer \\(.+\\): the execution is placed once it is back$`), 20_000);
    // asked again every 2 s: said once
    await new Promise((resolve) => setTimeout(resolve, 4500));
    back = await startScheduler(stack.env.config('scheduler', { urls: { orchestrator: stack.cliEnv.HODEI_ORCHESTRATOR_URL!, scheduler: url, 'worker-manager': stack.cliEnv.HODEI_WORKER_MANAGER_URL! }, port }));
    const r = await run.done;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/ran$/m);
    expect(r.stderr.match(/^waiting: /gm)).toHaveLength(1);
    expect(r.stderr).toMatch(/status\s+completed/);
  }, 90_000);
});

// A worker-manager on a database and NATS prefix of its own with no orchestrator or scheduler to
// answer (job_id lookups fail cleanly), started before the file's tests and stopped after them.
import { createTestEnv, type RunningService, type TestEnv } from '@hodei/platform';
import { afterAll, beforeAll } from 'vitest';
import { startWorkerManager } from '../src/service.js';

/** Its `env` and `svc` are set once the file's first beforeAll has run. */
export function workerManagerAlone(): { env: TestEnv; svc: RunningService } {
  const alone = {} as { env: TestEnv; svc: RunningService };
  beforeAll(async () => {
    alone.env = createTestEnv();
    alone.svc = await startWorkerManager(alone.env.config('worker-manager', { urls: { orchestrator: 'http://127.0.0.1:1', scheduler: 'http://127.0.0.1:1', 'worker-manager': '' } }));
  });
  afterAll(async () => {
    await alone.svc?.stop();
    await alone.env?.cleanup();
  });
  return alone;
}

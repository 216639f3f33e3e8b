// Once per run: build (unless told it is built), choose and start the infrastructure, and hand its
// addresses to the test files (`inject('infra')`).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { TestProject } from 'vitest/node';
import { ROOT, settings } from './config.js';
import { startInfra, type Infra } from './infra.js';

const run = promisify(execFile);

let infra: Infra | undefined;

export async function setup(project: TestProject): Promise<void> {
  if (!settings.skipBuild) {
    const t = Date.now();
    await run('pnpm', ['build'], { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 }).catch((err: { stdout?: string; stderr?: string }) => {
      throw new Error(`pnpm build failed:\n${err.stdout ?? ''}${err.stderr ?? ''}`);
    });
    process.stderr.write(`e2e: pnpm build took ${Date.now() - t} ms\n`);
  }
  infra = await startInfra(settings.infra);
  process.stderr.write(`e2e: infrastructure ${infra.mode}: postgres ${infra.databaseUrl.replace(/:[^:@/]*@/, ':***@')}, nats ${infra.natsUrl}\n`);
  project.provide('infra', { mode: infra.mode, databaseUrl: infra.databaseUrl, natsUrl: infra.natsUrl });
}

export async function teardown(): Promise<void> {
  await infra?.stop();
}

// Once per `vitest run`, before any test file: build every package. Tests spawn the built agent
// (packages/worker/dist/main.js), the CLI and the services' dist/main.js; one build here, rather than
// one per file, keeps parallel test files from writing the same dist/ at once. Up to date, it takes
// a second or two.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

export async function setup(): Promise<void> {
  await promisify(execFile)('pnpm', ['build'], { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 }).catch((err: { stdout?: string; stderr?: string }) => {
    throw new Error(`pnpm build failed:\n${err.stdout ?? ''}${err.stderr ?? ''}`);
  });
}

// What `hodei` loads before it can answer: help and version need no schemas, a run no YAML parser.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ExecutionStatus, ManagedWorkerStatus } from '@hodei/types';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXECUTION_STATUSES, WORKER_STATUSES } from '../src/choices.js';
import { VERSION } from '../src/program.js';
import { buildCli, MAIN, ROOT } from './helpers.js';

const TRACE = fileURLToPath(new URL('./trace-loads.mjs', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'hodei-startup-'));
beforeAll(() => buildCli(), 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Run hodei; the modules it loaded, as paths under the repository or node_modules package names. */
function loads(args: string[], name: string): { status: number | null; stdout: string; modules: string[] } {
  const file = join(dir, name);
  const r = spawnSync(process.execPath, ['--import', TRACE, MAIN, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', TRACE_FILE: file, HODEI_URL: 'http://127.0.0.1:1' },
    encoding: 'utf8',
  });
  const modules = readFileSync(file, 'utf8').trim().split('\n');
  return { status: r.status, stdout: r.stdout, modules };
}

const SCHEMAS = /\/node_modules\/(zod|@asteasolutions)\/|\/packages\/types\//;
const YAML = /\/node_modules\/yaml\//;

describe('hodei start-up', () => {
  it('--help, --version and a command\'s --help load neither the schemas nor YAML', () => {
    for (const [i, args] of [['--help'], ['--version'], ['run', '--help'], ['jobs', 'list', '--help'], ['apply', '--help']].entries()) {
      const r = loads(args, `help-${i}`);
      expect(r.status, args.join(' ')).toBe(0);
      expect(r.stdout).not.toBe('');
      expect(r.modules.filter((m) => SCHEMAS.test(m) || YAML.test(m)), args.join(' ')).toEqual([]);
    }
  });

  it('a run loads the schemas it checks answers with, and YAML only for a job file', () => {
    const run = loads(['run', 'true'], 'run');
    expect(run.status).toBe(2); // nothing listens at HODEI_URL
    expect(run.modules.some((m) => SCHEMAS.test(m))).toBe(true);
    expect(run.modules.filter((m) => YAML.test(m))).toEqual([]);
  });

  it('the READMEs run it from the root as `pnpm -s hodei`: stdout is hodei\'s alone and its exit code comes through', () => {
    // plain `pnpm hodei` writes '> hodei-jobs@0.1.0 hodei …' on stdout (a --json or --raw pipe gets it) and 'ELIFECYCLE' on stderr
    const readmes = ['README.md', 'packages/cli/README.md'].map((f) => readFileSync(join(ROOT, f), 'utf8'));
    for (const text of readmes) {
      expect(text).toContain('pnpm -s hodei');
      expect(text.match(/`pnpm hodei[ `]/g) ?? []).toEqual([]);
    }
    const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', HODEI_URL: 'http://127.0.0.1:1' };
    const version = spawnSync('pnpm', ['-s', 'hodei', '--version'], { cwd: ROOT, env, encoding: 'utf8' });
    expect(version.stdout).toBe(`${VERSION}\n`);
    const down = spawnSync('pnpm', ['-s', 'hodei', 'jobs', 'list', '--json'], { cwd: ROOT, env, encoding: 'utf8' });
    expect([down.status, down.stdout]).toEqual([2, '']);
    expect(down.stderr).toBe('hodei: cannot reach the orchestrator at http://127.0.0.1:1 (bad port)\n');
  });

  it('offers the statuses @hodei/types knows as --status choices', () => {
    expect(EXECUTION_STATUSES).toEqual(ExecutionStatus.options);
    expect(WORKER_STATUSES).toEqual(ManagedWorkerStatus.options);
  });
});

// README.md stays in step with the code: the make targets it describes are those `make help`
// lists (every target of the Makefile), and its configuration tables name every variable the
// services and the worker agent read, and only variables something reads; the worker's README
// names every variable the agent reads.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');
const readme = read('README.md');

/** The README between a heading and the next heading of the same level. */
function section(heading: string): string {
  const start = readme.indexOf(`\n${heading}\n`);
  expect(start, heading).toBeGreaterThan(0);
  const end = readme.indexOf('\n## ', start + heading.length + 2);
  return readme.slice(start, end < 0 ? undefined : end);
}

/** The variables of a zod schema written as `NAME: z…` lines in a config module. */
function schemaVariables(path: string): string[] {
  return [...read(path).matchAll(/^ {2}([A-Z][A-Z0-9_]+): /gm)].map((m) => m[1]!);
}

describe('README', () => {
  it('describes every make target, and make help lists every target of the Makefile', () => {
    const phony = read('Makefile').match(/^\.PHONY:(.*)$/m)![1]!.trim().split(/\s+/).sort();
    const help = execFileSync('make', ['--no-print-directory', 'help'], { cwd: ROOT, encoding: 'utf8' });
    const listed = [...help.matchAll(/^ {2}make (\S+)/gm)].map((m) => m[1]!).sort();
    expect(listed).toEqual(phony);
    const table = readme.split('\n').filter((l) => l.startsWith('| `make '));
    const described = new Set(table.flatMap((l) => [...l.split('|')[1]!.matchAll(/`make ([a-z0-9-]+)`/g)].map((m) => m[1]!)));
    expect([...described].sort()).toEqual(listed);
  });

  it('names every variable the services and the worker agent read, and lists only variables something reads', () => {
    const config = section('## Configuration');
    const rows = config.split('\n').filter((l) => l.startsWith('| `'));
    const documented = new Set(rows.flatMap((l) => [...l.split('|')[1]!.matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((m) => m[1]!)));
    const read_ = [...schemaVariables('packages/platform/src/config.ts'), ...schemaVariables('packages/worker/src/config.ts')];
    expect(read_).toContain('HODEI_FORGET_WORKERS_AFTER_MS'); // the scan itself works
    expect(read_).toContain('HODEI_WORKER_SPAWNER');
    expect(read_.filter((v) => !documented.has(v))).toEqual([]);
    const scripts = readdirSync(join(ROOT, 'scripts')).filter((f) => f.endsWith('.sh')).map((f) => read(`scripts/${f}`)).join('\n');
    expect([...documented].filter((v) => !read_.includes(v) && !scripts.includes(v))).toEqual([]);
  });
});

describe('packages/worker/README.md', () => {
  it('names every variable the worker agent reads', () => {
    const text = read('packages/worker/README.md');
    const vars = schemaVariables('packages/worker/src/config.ts');
    expect(vars.length).toBeGreaterThan(15);
    expect(vars.filter((v) => !text.includes(`\`${v}\``))).toEqual([]);
  });
});

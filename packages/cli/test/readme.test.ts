// packages/cli/README.md names every command of `hodei` and every option each one takes, so that
// what `--help` offers can also be read about.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { WorkerStart } from '@hodei/types';
import { buildProgram } from '../src/program.js';
import { parsePositiveNumber, parseSizeBytes } from '../src/parse.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

/** Every command under `cmd` (but commander's own `help`), as its words from `hodei` on. */
function commands(cmd: Command, words: string[] = []): { words: string[]; cmd: Command }[] {
  return cmd.commands
    .filter((c) => c.name() !== 'help')
    .flatMap((c) => [{ words: [...words, c.name()], cmd: c }, ...commands(c, [...words, c.name()])]);
}

const named = (text: string) => new RegExp(`(^|[^a-z-])${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}($|[^a-z-])`, 'm').test(readme);

describe('packages/cli/README.md', () => {
  const all = commands(buildProgram());

  it('names every command', () => {
    expect(all.length).toBeGreaterThan(30); // the walk itself works
    expect(all.filter(({ words }) => !named(`hodei ${words.join(' ')}`) && !named(words.join(' '))).map(({ words }) => words.join(' '))).toEqual([]);
  });

  it('names every option of every command, in its long or short form', () => {
    const missing = all.flatMap(({ words, cmd }) =>
      cmd.options
        .filter((o) => !o.hidden)
        .filter((o) => ![o.long, o.short].some((flag) => flag && named(flag)))
        .map((o) => `${words.join(' ')} ${o.long ?? o.short}`),
    );
    expect(missing).toEqual([]);
  });

  it('names every global option (--version too)', () => {
    const missing = buildProgram()
      .options.filter((o) => ![o.long, o.short].some((flag) => flag && named(flag)))
      .map((o) => o.long ?? o.short);
    expect(missing).toEqual([]);
  });

  it("says in --help that an id argument takes a name, as the README's 'Ids' says", () => {
    // these resolve a name (resolveJob, resolveSchedule, resolveExecutionOrJob…): `hodei schedules
    // pause nightly` works, so the help must not say an id or prefix only
    const byName = ['logs', 'jobs show', 'jobs cancel', 'jobs results', 'pipelines show', 'pipelines run', 'pipelines runs', 'pipelines delete',
      'schedules show', 'schedules run', 'schedules pause', 'schedules resume', 'schedules delete', 'workers show', 'workers stop'];
    const silent = byName.filter((words) => {
      const found = all.find((c) => c.words.join(' ') === words);
      return !found || !/name/.test(found.cmd.registeredArguments[0]?.description ?? '');
    });
    expect(silent).toEqual([]);
  });

  it("run --help's examples run on a worker started with the defaults (hodei workers start), not wait for a larger one", () => {
    const run = all.find(({ words }) => words.join(' ') === 'run')!.cmd;
    let help = '';
    run.configureOutput({ writeOut: (s) => (help += s) });
    run.outputHelp();
    const examples = help.slice(help.indexOf('Examples:')).split('\n').filter((l) => l.trim().startsWith('hodei run'));
    expect(examples.length).toBeGreaterThan(2);
    const { capacity } = WorkerStart.parse({});
    const tooLarge = examples.filter((l) => {
      const memory = /--memory (\S+)/.exec(l)?.[1];
      const cpu = /--cpu (\S+)/.exec(l)?.[1];
      return (memory !== undefined && parseSizeBytes(memory) > capacity.memory_bytes) || (cpu !== undefined && parsePositiveNumber(cpu) > capacity.cpu_cores);
    });
    expect(tooLarge).toEqual([]);
  });
});

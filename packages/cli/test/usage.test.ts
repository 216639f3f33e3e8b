// A command line hodei cannot take: `hodei: …` as every other error, where the command's help is,
// exit 2 (as shells and coreutils), nothing sent and nothing on stdout.
import { beforeAll, describe, expect, it } from 'vitest';
import { buildCli, hodeiDone } from './helpers.js';

// nothing listens there: a usage error must come before any request
const env = { HODEI_URL: 'http://127.0.0.1:1' };
beforeAll(() => buildCli(), 120_000);

describe('a usage error', () => {
  it.each([
    [['--bogus'], "hodei: unknown option '--bogus'\nrun 'hodei --help' for usage\n"],
    [['nope'], "hodei: unknown command 'nope'\nrun 'hodei --help' for usage\n"],
    [['jobs', 'show'], "hodei: missing required argument 'id'\nrun 'hodei jobs show --help' for usage\n"],
    [['jobs', 'list', '--limit', 'many'], `hodei: option '--limit <n>' argument 'many' is invalid. "many" is not a whole number\nrun 'hodei jobs list --help' for usage\n`],
    [['logs', 'x', 'y'], "hodei: too many arguments for 'logs'. Expected 1 argument but got 2.\nrun 'hodei logs --help' for usage\n"],
    [['--url', 'ftp://x', 'jobs', 'list'], `hodei: --url: "ftp://x" is not an http(s) URL\nrun 'hodei jobs list --help' for usage\n`],
    [['run'], 'hodei: nothing to run: give --command "…" or --script FILE (or a job file with command: or script:)\nrun \'hodei run --help\' for usage\n'],
    [['schedules', 'create', '--cron', '* * * * *'], "hodei: give --job ID or --pipeline ID\n  job_id: give exactly one of --job or --pipeline\nrun 'hodei schedules create --help' for usage\n"],
  ])('%j exits 2 with hodei: and where the help is', async (args, stderr) => {
    const r = await hodeiDone(args, env);
    expect([r.code, r.stdout, r.stderr]).toEqual([2, '', stderr]);
  });

  it('a command given without its subcommand shows that command\'s help on stderr, exit 2', async () => {
    const r = await hodeiDone(['jobs'], env);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^Usage: hodei jobs \[options\] \[command\]\n/);
  });

  it('is not what --help, help and --version are: exit 0 on stdout', async () => {
    for (const args of [['--help'], ['help', 'jobs'], ['jobs', 'show', '--help'], ['--version']]) {
      const r = await hodeiDone(args, env);
      expect([r.code, r.stderr], args.join(' ')).toEqual([0, '']);
      expect(r.stdout).not.toBe('');
    }
  });
});

// `hodei run` and friends as a user meets them: a subprocess against the real services and a real worker.
import { writeFile } from 'node:fs/promises';
import { createServer, Socket } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hodei, hodeiDone } from './helpers.js';
import { useStack } from './fixture.js';

const fx = useStack();
const { env, dir } = fx;

/** A port nothing listens on. */
function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

const OUT_LINE = /^\d\d:\d\d:\d\d\.\d{3} \[OUT\] /;
const ERR_LINE = /^\d\d:\d\d:\d\d\.\d{3} \[ERR\] /;

describe('hodei run', () => {
  it('streams [OUT] to stdout and [ERR] to stderr with local timestamps, then a summary, exit 0', async () => {
    const r = await hodeiDone(['run', '--name', 'fmt', '--command', 'echo hello; echo oops >&2; echo bye'], env);
    expect(r.code).toBe(0);
    const out = r.stdoutLines.map((l) => l.text);
    expect(out).toHaveLength(2);
    expect(out[0]).toMatch(OUT_LINE);
    expect(out[0]).toMatch(/ \[OUT\] hello$/);
    expect(out[1]).toMatch(/ \[OUT\] bye$/);
    const errLines = r.stderrLines.map((l) => l.text);
    expect(errLines.filter((l) => ERR_LINE.test(l))).toEqual([expect.stringMatching(/ \[ERR\] oops$/)]);
    // the timestamp is the line's, in local time (within a minute of now)
    const [hh, mm] = (out[0] as string).split(':').map(Number);
    const now = new Date();
    expect(Math.abs((hh as number) * 60 + (mm as number) - (now.getHours() * 60 + now.getMinutes())) % (24 * 60)).toBeLessThanOrEqual(1);
    expect(r.stderr).toMatch(/name\s+fmt/);
    expect(r.stderr).toMatch(/status\s+completed/);
    expect(r.stderr).toMatch(/exit code\s+0/);
    expect(r.stderr).toMatch(/lines\s+3/);
    expect(r.stderr).toMatch(/execution\s+[0-9a-f-]{36}/);
    expect(r.stderr).toMatch(/duration\s+\d/);
  });

  it('runs the command given after --, each word as typed (quotes, spaces, $)', async () => {
    const r = await hodeiDone(['run', '--raw', '--', 'sh', '-c', 'printf "%s|" "$@"; echo', '_', 'a  b', "it's", '$HOME', ''], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe("a  b|it's|$HOME||\n");
    expect(r.stderr).toMatch(/^name\s+sh$/m);
    const both = await hodeiDone(['run', '--command', 'true', '--', 'echo', 'hi'], env);
    expect(both.code).toBe(2);
    expect(both.stderr).toBe("hodei: give the command after -- or with --command / --script, not both\nrun 'hodei run --help' for usage\n");
  });

  it("takes every word after the command's name as the command's own, options and -- too", async () => {
    const echo = await hodeiDone(['run', '--raw', 'echo', '-n', 'hi'], env);
    expect(echo.code, echo.stderr).toBe(0);
    // echo's -n reached echo: --raw gives back the bytes it wrote, with no newline added
    expect(echo.stdout).toBe('hi');
    expect(echo.stderr).toMatch(/^name\s+echo$/m);
    const words = await hodeiDone(['--json', 'run', '--name', 'words', 'printf', '%s|', '--json', '-n', 'x', '--', '--raw'], env);
    expect(words.code, words.stderr).toBe(0);
    const doc = JSON.parse(words.stdout) as { name: string; lines: { line: string }[] };
    expect(doc.name).toBe('words');
    expect(doc.lines.map((l) => l.line)).toEqual(['--json|-n|x|--|--raw|']);
    expect((await hodeiDone(['run', 'sh', '-c', 'exit 4'], env)).code).toBe(4);
  });

  it("exits with the job's exit code", async () => {
    const r = await hodeiDone(['run', '--name', 'three', '--command', 'echo about to fail; exit 3'], env);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/status\s+failed/);
    expect(r.stderr).toMatch(/exit code\s+3/);
  });

  it('shows the signal that killed a job, and the 137 hodei exits with, in the summary, executions show, executions list and jobs show', async () => {
    const r = await hodeiDone(['run', '--name', 'killed', '--command', 'kill -9 $$'], env);
    expect(r.code).toBe(137);
    expect(r.stderr).toMatch(/^exit code\s+signal SIGKILL \(exit 137\)$/m);
    const execution = /^execution\s+(\S+)$/m.exec(r.stderr)?.[1] ?? '';
    const job = /^job\s+(\S+)$/m.exec(r.stderr)?.[1] ?? '';
    const shown = await hodeiDone(['executions', 'show', execution], env);
    expect(shown.stdout).toMatch(/^exit code\s+signal SIGKILL \(exit 137\)$/m);
    expect(shown.stdout).not.toMatch(/^signal\s/m);
    const listed = await hodeiDone(['executions', 'list', '--job', job], env);
    expect(listed.stdout).toMatch(new RegExp(`^${execution}\\s+killed\\s+failed\\s+SIGKILL\\s+1\\s`, 'm'));
    const jobShown = await hodeiDone(['jobs', 'show', job], env);
    expect(jobShown.stdout).toMatch(/^ {2}status\s+failed \(signal SIGKILL, exit 137\)$/m);
  });

  it("shows a tab or newline in the services' words (a description, a command) escaped as other control characters, one line per field", async () => {
    const r = await hodeiDone(['run', '--description', 'two\nlines\there', '--command', 'true\n\ttrue'], env);
    expect(r.code, r.stderr).toBe(0);
    const job = /^job\s+(\S+)$/m.exec(r.stderr)?.[1] ?? '';
    const execution = /^execution\s+(\S+)$/m.exec(r.stderr)?.[1] ?? '';
    const jobShown = await hodeiDone(['jobs', 'show', job], env);
    expect(jobShown.stdout).toMatch(/^description\s+two\^Jlines\^Ihere$/m);
    const executionShown = await hodeiDone(['executions', 'show', execution], env);
    expect(executionShown.stdout).toMatch(/^command\s+true\^J\^Itrue$/m);
  });

  it("shows a job's control characters instead of letting them drive the terminal; --raw passes them", async () => {
    const printf = ['printf', 'x\\033]0;pwned\\007\\033[2Jy\\033[31mred\\033[0m\\r\\tz\\n'];
    const shown = await hodeiDone(['run', '--no-timestamps', '--', ...printf], env);
    expect(shown.stdout).toBe('[OUT] x^[]0;pwned^G^[[2Jyred^M\tz\n'); // no colour without a terminal
    const raw = await hodeiDone(['run', '--raw', '--', ...printf], env);
    expect(raw.stdout).toBe('x\x1b]0;pwned\x07\x1b[2Jy\x1b[31mred\x1b[0m\r\tz\n');
  });

  it("shows control characters in the services' words (a message, a description, a tag) instead of letting them drive the terminal", async () => {
    const workdir = '/nonexistent\x1b]0;pwned\x07\x1b[2J';
    const r = await hodeiDone(['run', '--workdir', workdir, '--description', 'd\x1b[2J', '--tag', 't\x1b]0;x\x07', '--', 'true'], env);
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).not.toContain('\x1b');
    expect(r.stderr).toMatch(/^message\s+working directory does not exist: \/nonexistent\^\[\]0;pwned\^G\^\[\[2J$/m);
    const jobId = /^job\s+(\S+)$/m.exec(r.stderr)?.[1] ?? '';
    const got = await hodeiDone(['jobs', 'show', jobId], env);
    expect(got.code, got.stderr).toBe(0);
    expect(got.stdout).not.toContain('\x1b');
    expect(got.stdout).toContain('d^[[2J');
    const list = await hodeiDone(['jobs', 'list', '--tag', 't\x1b]0;x\x07'], env);
    expect(list.stdout).not.toContain('\x1b');
    expect(list.stdout).toContain('t^[]0;x^G');
  });

  it('refuses --timeout 0 rather than make it a 1 s timeout', async () => {
    const r = await hodeiDone(['run', '--timeout', '0s', '--', 'true'], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("hodei: --timeout must be longer than 0 (leave it out for no timeout)\nrun 'hodei run --help' for usage\n");
  });

  it("tells a job's own exit 2 from hodei's usage error (also 2) by the --json object on stdout", async () => {
    const job = await hodeiDone(['run', '--json', '--', 'sh', '-c', 'exit 2'], env);
    expect(job.code).toBe(2);
    expect(JSON.parse(job.stdout)).toMatchObject({ status: 'failed', exit_code: 2 });
    const usage = await hodeiDone(['run', '--json', '--bogus', '--', 'sh', '-c', 'exit 2'], env);
    expect([usage.code, usage.stdout]).toEqual([2, '']);
    expect(usage.stderr).toBe("hodei: unknown option '--bogus'\nrun 'hodei run --help' for usage\n");
  });

  it('exits 124 when the job times out', async () => {
    const started = Date.now();
    const r = await hodeiDone(['run', '--name', 'slow', '--command', 'echo start; sleep 30', '--timeout', '1s'], env);
    expect(r.code).toBe(124);
    expect(r.stderr).toMatch(/status\s+timed_out/);
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it('shows each line as it is printed, not at the end', async () => {
    const r = await hodeiDone(['run', '--name', 'ticks', '--command', 'for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.3; done'], env);
    expect(r.code).toBe(0);
    const ticks = r.stdoutLines.filter((l) => / \[OUT\] tick \d$/.test(l.text));
    expect(ticks.map((l) => l.text.replace(OUT_LINE, ''))).toEqual(['tick 1', 'tick 2', 'tick 3', 'tick 4', 'tick 5', 'tick 6']);
    const first = ticks[0]!.at;
    const last = ticks[5]!.at;
    // 5 gaps of 300 ms at the job: the CLI must see them spread out, and the first long before exit
    expect(last - first).toBeGreaterThanOrEqual(1000);
    expect(r.exitedAt - first).toBeGreaterThanOrEqual(1000);
  });

  it('runs a --script with a bash shebang, passing --arg and --env', async () => {
    const file = join(dir, 'bashy.sh');
    await writeFile(file, '#!/usr/bin/env bash\nset -euo pipefail\nwords=(alpha beta gamma)\necho "bash array of ${#words[@]}; args: $*; greeting: $GREETING"\n[[ -n "${BASH_VERSION}" ]] && echo "is bash"\n');
    const r = await hodeiDone(['run', '--script', file, '--arg', 'one', '--arg', 'two', '--env', 'GREETING=hi there', '--no-timestamps'], env);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n').filter(Boolean)).toEqual(['[OUT] bash array of 3; args: one two; greeting: hi there', '[OUT] is bash']);
    expect(r.stderr).toMatch(/name\s+bashy\.sh/);
  });

  it('runs a script saved with a byte order mark (a Windows editor) by its shebang', async () => {
    const file = join(dir, 'bom.sh');
    await writeFile(file, '\uFEFF#!/usr/bin/env bash\nwords=(a b)\necho "bash: ${#words[@]} words, args: $*"\n');
    const r = await hodeiDone(['run', '--script', file, '--arg', 'x', '--no-timestamps'], env);
    // was run by /bin/sh: '1: \uFEFF#!/usr/bin/env: not found', 'Syntax error: "(" unexpected', exit 2
    expect(r.stdout, r.stderr).toBe('[OUT] bash: 2 words, args: x\n');
    expect(r.code).toBe(0);
  });

  it('--json prints one JSON object with the job, execution, status, exit code and lines', async () => {
    const r = await hodeiDone(['run', '--json', '--name', 'json', '--command', 'echo a; echo b >&2; exit 2'], env);
    expect(r.code).toBe(2);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ name: 'json', status: 'failed', exit_code: 2, line_count: 2 });
    expect(doc.job).toMatch(/^[0-9a-f-]{36}$/);
    expect(doc.execution).toMatch(/^[0-9a-f-]{36}$/);
    expect(doc.lines.map((l: { stream: string; line: string }) => `${l.stream}:${l.line}`).sort()).toEqual(['stderr:b', 'stdout:a']);
  });

  it("the summary shows the result the job wrote to $HODEI_RESULT_FILE, or why it is unusable, and none when it wrote none", async () => {
    const summaryResult = async (command: string) => {
      const r = await hodeiDone(['run', '--command', command], env);
      expect(r.code, r.stderr).toBe(0);
      return /^result\s+(.*)$/m.exec(r.stderr)?.[1] ?? null;
    };
    // was: no word of it; only `hodei jobs results` told
    expect(await summaryResult(`printf '{"rows": [1, 2, 3]}' > "$HODEI_RESULT_FILE"`)).toBe('{"rows":[1,2,3]}');
    expect(await summaryResult(`echo '{bad' > "$HODEI_RESULT_FILE"`)).toMatch(/^unusable: result file is not valid JSON/);
    expect(await summaryResult('true')).toBeNull();
    const long = await summaryResult(`printf '"%0300d"' 0 > "$HODEI_RESULT_FILE"`);
    expect(long).toMatch(new RegExp(`^"0{199}… \\(whole: hodei jobs results [0-9a-f-]{36}\\)$`));
  });

  it('--json has the result the job wrote to $HODEI_RESULT_FILE, result_error when it is unusable, neither when it wrote none', async () => {
    const runJson = async (command: string) => {
      const r = await hodeiDone(['run', '--json', '--command', command], env);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as Record<string, unknown>;
    };
    // was: no key for it; a script had to call hodei jobs results with the execution's id
    const written = await runJson(`echo row; printf '{"rows": [1, 2, 3]}' > "$HODEI_RESULT_FILE"`);
    expect(written).toMatchObject({ status: 'completed', line_count: 1, result: { rows: [1, 2, 3] } });
    expect(Object.keys(written).slice(-2)).toEqual(['result', 'lines']);
    expect(written).not.toHaveProperty('result_error');
    expect(await runJson(`echo null > "$HODEI_RESULT_FILE"`)).toHaveProperty('result', null);
    const none = await runJson('true');
    expect(none).not.toHaveProperty('result');
    expect(none).not.toHaveProperty('result_error');
    const bad = await runJson(`echo '{bad' > "$HODEI_RESULT_FILE"`);
    expect(bad).not.toHaveProperty('result');
    expect(bad.result_error).toMatch(/^unusable: result file is not valid JSON/);
  });

  it('--detach prints the ids and exits 0 at once; logs -f follows it to the end', async () => {
    const r = await hodeiDone(['run', '--detach', '--json', '--name', 'detached', '--command', 'sleep 0.5; echo later'], env);
    expect(r.code).toBe(0);
    const ids = JSON.parse(r.stdout) as { job: string; execution: string };
    const logs = await hodeiDone(['logs', '-f', ids.execution.slice(0, 30), '--raw'], env);
    expect(logs.code).toBe(0);
    expect(logs.stdout).toBe('later\n');
  });

  it('logs -f --json ends with how the execution ended, as run --json tells it', async () => {
    const r = await hodeiDone(['run', '--detach', '--json', '--name', 'detached-json', '--command', 'sleep 0.5; echo later; kill -TERM $$'], env);
    const { execution } = JSON.parse(r.stdout) as { execution: string };
    const logs = await hodeiDone(['logs', '-f', '--json', execution], env);
    expect(logs.code).toBe(143);
    const [line, end, ...rest] = logs.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(line).toMatchObject({ seq: 1, stream: 'stdout', line: 'later' });
    // was: the log lines only
    expect(end).toEqual({ execution_id: execution, status: 'failed', exit_code: null, signal: 'SIGTERM', message: expect.any(String), duration_ms: expect.any(Number) });
    expect(rest).toEqual([]);
  });

  it('Ctrl-C cancels the execution on the server and exits 130 after the summary', async () => {
    const run = hodei(['run', '--name', 'interrupted', '--command', 'for i in $(seq 1 100); do echo n $i; sleep 0.2; done'], env);
    await run.waitFor(/\[OUT\] n 2$/);
    run.child.kill('SIGINT');
    const r = await run.done;
    expect(r.code).toBe(130);
    expect(r.stderr).toMatch(/cancelling execution/);
    expect(r.stderr).toMatch(/status\s+cancelled/);
    const execution = /execution\s+([0-9a-f-]{36})/.exec(r.stderr)![1];
    const res = await fetch(`${fx.stack.workerManager.url}/api/v1/executions/${execution}`);
    expect(((await res.json()) as { status: string }).status).toBe('cancelled');
    // it stopped well before its 20 s
    expect(run.stdoutLines.length).toBeLessThan(60);
  });

  it('says why a queued job waits, once, while it waits', async () => {
    const run = hodei(['run', '--name', 'nowhere', '--label', 'pool=nowhere', '--command', 'echo never'], env);
    await run.waitFor(/^waiting: no worker with label pool=nowhere$/, 10_000);
    // asked again every 2 s: the same reason is not repeated
    await new Promise((resolve) => setTimeout(resolve, 2500));
    run.child.kill('SIGINT');
    const r = await run.done;
    expect(r.code).toBe(130);
    expect(r.stdout).toBe('');
    expect(r.stderr.match(/^waiting: /gm)).toHaveLength(1);
    expect(r.stderr).toMatch(/status\s+cancelled/);
    // it never ran: no duration (the time hodei waited is none of the job's)
    expect(r.stderr).toMatch(/^duration\s+-$/m);
  }, 30_000);

  it('reconnects with Last-Event-ID when the stream breaks, showing no line twice', async () => {
    // a proxy in front of worker-manager that cuts every open connection once
    const sockets = new Set<Socket>();
    const target = new URL(fx.stack.workerManager.url);
    const proxy = createServer((client) => {
      const upstream = new Socket();
      upstream.connect(Number(target.port), target.hostname);
      client.pipe(upstream).pipe(client);
      sockets.add(client).add(upstream);
      const drop = () => (client.destroy(), upstream.destroy());
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const port = (proxy.address() as { port: number }).port;
    try {
      const run = hodei(['run', '--name', 'reconnect', '--command', 'for i in $(seq 1 10); do echo r $i; sleep 0.2; done'], {
        ...env,
        HODEI_WORKER_MANAGER_URL: `http://127.0.0.1:${port}`,
      });
      await run.waitFor(/\[OUT\] r 3$/);
      for (const s of sockets) s.destroy();
      const r = await run.done;
      expect(r.code).toBe(0);
      const got = run.stdoutLines.map((l) => l.text.replace(OUT_LINE, ''));
      expect(got).toEqual(Array.from({ length: 10 }, (_, i) => `r ${i + 1}`));
      expect(r.stderr).toMatch(/lines\s+10/);
      // said once, on stderr, before the summary (the job writes nothing to stderr)
      const stderr = run.stderrLines.map((l) => l.text);
      expect(stderr.slice(0, stderr.findIndex((t) => t.startsWith('─')))).toEqual(['the log stream broke; retrying…', 'log stream back']);
    } finally {
      proxy.close();
    }
  });
});

describe('errors', () => {
  it('an unreachable service gives exit 2 and exactly one line on stderr', async () => {
    const port = await closedPort();
    const r = await hodeiDone(['run', '--name', 'x', '--command', 'true'], { ...env, HODEI_ORCHESTRATOR_URL: `http://127.0.0.1:${port}` });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`hodei: cannot reach the orchestrator at http://127.0.0.1:${port} (connection refused)\n`);
    // HODEI_URL: one host, default ports, a per-service URL wins
    const l = await hodeiDone(['workers', 'list'], { HODEI_URL: 'http://127.0.0.1', HODEI_WORKER_MANAGER_URL: `http://127.0.0.1:${port}` });
    expect(l.code).toBe(2);
    expect(l.stderr.trimEnd().split('\n')).toEqual([`hodei: cannot reach the worker-manager at http://127.0.0.1:${port} (connection refused)`]);
  });

  it('a job created for a run that worker-manager cannot take is removed, not left behind never run', async () => {
    const port = await closedPort();
    const name = `stray-${Date.now()}`;
    const r = await hodeiDone(['run', '--name', name, '--command', 'true'], { ...env, HODEI_WORKER_MANAGER_URL: `http://127.0.0.1:${port}` });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`hodei: cannot reach the worker-manager at http://127.0.0.1:${port} (connection refused) (the job was not run; removed)\n`);
    const jobs = (await (await fetch(`${fx.stack.orchestrator.url}/api/v1/jobs?limit=1000`)).json()) as { name: string }[];
    expect(jobs.map((j) => j.name)).not.toContain(name);
  });

  it('a 4xx shows the detail and the field, exit 1, no stack', async () => {
    const r = await hodeiDone(['run', '--name', 'bad', '--command', 'true', '--env', 'NOT-A-NAME=1'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^hodei: /);
    expect(r.stderr).toContain('env.NOT-A-NAME');
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const bad = await hodeiDone(['run', '--command', 'true', '--memory', 'lots'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('"lots" is not a size');
  });
});

describe('ids and other commands', () => {
  it('a unique prefix resolves; an ambiguous one lists the matches and exits 1', async () => {
    const a = JSON.parse((await hodeiDone(['run', '--json', '--name', 'prefix-a', '--command', 'echo from a'], env)).stdout) as { job: string; execution: string };
    const b = JSON.parse((await hodeiDone(['run', '--json', '--name', 'prefix-b', '--command', 'echo from b'], env)).stdout) as { job: string };
    // UUIDv7 ids made a moment apart share their first characters: find the shortest unique prefix of a
    let n = 4;
    while (a.job.slice(0, n) === b.job.slice(0, n)) n++;
    const common = a.job.slice(0, Math.max(4, n - 1));
    const amb = await hodeiDone(['jobs', 'show', common], env);
    expect(amb.code).toBe(1);
    expect(amb.stderr).toMatch(/ambiguous/);
    expect(amb.stderr).toContain(a.job);
    expect(amb.stderr).toContain(b.job);
    // executions and jobs both match: 'it matches 4 executions or jobs' (was '4 execution or jobs')
    const both = await hodeiDone(['logs', common], env);
    expect(both.code).toBe(1);
    expect(both.stderr).toMatch(/^hodei: "[0-9a-f-]+" is ambiguous: it matches \d+ executions or jobs; give more characters$/m);

    const unique = a.job.slice(0, Math.max(n, 4) + 2);
    const show = await hodeiDone(['jobs', 'show', unique, '--json'], env);
    expect(show.code).toBe(0);
    expect(JSON.parse(show.stdout)).toMatchObject({ id: a.job, name: 'prefix-a', status: 'completed' });

    // a job id prefix stands for its latest execution's logs
    const logs = await hodeiDone(['logs', unique, '--raw'], env);
    expect(logs.code).toBe(0);
    expect(logs.stdout).toBe('from a\n');

    const short = await hodeiDone(['jobs', 'show', 'abc'], env);
    expect(short.code).toBe(1);
    expect(short.stderr).toMatch(/at least 4 characters/);
  });

  it('lists jobs as an aligned table and filters by status', async () => {
    const r = await hodeiDone(['jobs', 'list', '--status', 'failed'], env);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID\s+NAME\s+STATUS\s+PRIO/);
    const statusCol = lines[0]!.indexOf('STATUS');
    for (const l of lines.slice(1)) expect(l.slice(statusCol).startsWith('failed')).toBe(true);
    expect(lines.some((l) => /\bthree\b/.test(l))).toBe(true);
  });

  it('logs --tail and --stream select lines', async () => {
    const j = JSON.parse((await hodeiDone(['run', '--json', '--name', 'many', '--command', 'for i in 1 2 3 4 5; do echo o$i; echo e$i >&2; done'], env)).stdout) as { execution: string };
    const tail = await hodeiDone(['logs', j.execution, '--stream', 'stderr', '--raw'], env);
    expect(tail.stdout).toBe('');
    expect(tail.stderr.trimEnd().split('\n')).toEqual(['e1', 'e2', 'e3', 'e4', 'e5']);
    const t = await hodeiDone(['logs', j.execution, '--stream', 'stdout', '--tail', '2', '--json'], env);
    expect(JSON.parse(t.stdout).lines.map((l: { line: string }) => l.line)).toEqual(['o4', 'o5']);
    // --grep is a regular expression, paged or followed
    expect((await hodeiDone(['logs', j.execution, '--raw', '--grep', '^e[24]$'], env)).stderr).toBe('e2\ne4\n');
    expect((await hodeiDone(['logs', j.execution, '--raw', '-f', '--grep', '^o[13]$'], env)).stdout).toBe('o1\no3\n');
    const bad = await hodeiDone(['logs', j.execution, '--grep', '('], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^hodei: --grep: Invalid regular expression.*\nrun 'hodei logs --help' for usage\n$/);
    const unknown = await hodeiDone(['logs', '00000000-0000-4000-8000-000000000000'], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe('hodei: no execution or job has the id 00000000-0000-4000-8000-000000000000\n');
  });

  it('logs --grep selects the same lines in a past log (searched by the worker-manager) as followed (-f): \\b, \\B, [[:digit:]]', async () => {
    const lines = ['foo bar', 'xfoo', 'food', 'a7', 'b', 'back\\slash'];
    const command = lines.map((l) => `printf '%s\\n' '${l}'`).join('; ');
    const j = JSON.parse((await hodeiDone(['run', '--json', '--name', 'words', '--command', command], env)).stdout) as { execution: string };
    const both = async (pattern: string) => {
      const past = await hodeiDone(['logs', j.execution, '--raw', '--grep', pattern], env);
      const followed = await hodeiDone(['logs', j.execution, '--raw', '-f', '--grep', pattern], env);
      expect([past.code, followed.code], past.stderr + followed.stderr).toEqual([0, 0]);
      expect(past.stdout, `--grep '${pattern}' past and followed`).toBe(followed.stdout);
      return past.stdout;
    };
    // was: nothing in a past log (PostgreSQL read \b as a backspace, \B as a backslash), the lines live
    expect(await both('\\bfoo\\b')).toBe('foo bar\n');
    expect(await both('o\\B')).toBe('foo bar\nxfoo\nfood\n');
    expect(await both('k\\\\s')).toBe('back\\slash\n');
    expect(await both('[\\b]')).toBe('');
    // was: no line followed (JavaScript read a set of '[:digt' and then ']'), 'a7' in a past log
    expect(await both('[[:digit:]]')).toBe('a7\n');
    expect(await both('^[^[:alpha:][:space:]]*$')).toBe('');
    expect(await both('^[[:alpha:]]$')).toBe('b\n');
  });

  it('logs -f --tail N begins with the lines logs --tail N prints: with --since-seq, --grep or --stream', async () => {
    const command = 'for i in $(seq 1 10); do if [ $((i % 2)) = 0 ]; then echo $i; else echo $i >&2; fi; done';
    const j = JSON.parse((await hodeiDone(['run', '--json', '--name', 'evens', '--command', command], env)).stdout) as { execution: string };
    /** The lines logs -f prints, once checked against what logs prints. */
    const seqs = async (args: string[]) => {
      const past = await hodeiDone(['logs', j.execution, '--json', ...args], env);
      const followed = await hodeiDone(['logs', j.execution, '-f', '--json', ...args], env);
      expect([past.code, followed.code], past.stderr + followed.stderr).toEqual([0, 0]);
      const events = followed.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { seq?: number; line: string });
      const live = events.filter((e) => e.seq !== undefined);
      expect(live, `logs -f ${args.join(' ')}`).toEqual((JSON.parse(past.stdout) as { lines: unknown[] }).lines);
      return live.map((e) => e.line);
    };
    // was (-f): seq 4 to 10 for the first, the tail dropped for --since-seq; the last 2 lines then filtered for the others
    expect(await seqs(['--tail', '2', '--since-seq', '3'])).toHaveLength(2);
    expect(await seqs(['--grep', '^[0-9]$', '--tail', '2'])).toHaveLength(2);
    expect(await seqs(['--stream', 'stderr', '--tail', '2'])).toEqual(['7', '9']);
    expect(await seqs(['--stream', 'stdout', '--grep', '^[0-9]$', '--tail', '3'])).toEqual(['4', '6', '8']);
    expect(await seqs(['--stream', 'stdout', '--tail', '0'])).toEqual([]);

    // a job still running: the selected tail, then what it prints from then on
    const go = join(dir, 'go-on');
    const running = JSON.parse((await hodeiDone(['run', '--detach', '--json', '--command', `echo a1; echo b1; echo a2; echo b2; while [ ! -e ${go} ]; do sleep 0.05; done; echo b3; echo a3`], env)).stdout) as { execution: string };
    const follow = hodei(['logs', '-f', running.execution, '--raw', '--grep', '^b', '--tail', '1'], env);
    await follow.waitFor(/^b2$/);
    await writeFile(go, '');
    const r = await follow.done;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('b2\nb3\n');
  });

  it('output through a pipe arrives whole before hodei exits: 100,000 log lines, a 1 MiB result', async () => {
    const command = `seq 1 100000; { printf '"'; head -c 1048574 /dev/zero | tr '\\0' r; printf '"'; } > "$HODEI_RESULT_FILE"`;
    const j = JSON.parse((await hodeiDone(['run', '--json', '--name', 'big-output', '--command', command], env)).stdout) as { execution: string; status: string };
    expect(j.status).toBe('completed');
    const logs = await hodeiDone(['logs', j.execution, '--raw'], env);
    expect(logs.code).toBe(0);
    const lines = logs.stdout.split('\n');
    expect(lines.pop()).toBe('');
    expect(lines).toHaveLength(100_000);
    expect(lines.at(-1)).toBe('100000');
    const result = await hodeiDone(['jobs', 'result', 'big-output'], env);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toBe('r'.repeat(1_048_574));
  }, 60_000);

  it('workers list shows the running worker; --json parses', async () => {
    const r = await hodeiDone(['workers', 'list', '--json'], env);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(expect.arrayContaining([expect.objectContaining({ id: fx.stack.workerId, status: 'running' })]));
  });
});

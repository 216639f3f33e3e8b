// `hodei pipelines run --follow` as a user meets it: a subprocess against the real services and a
// real worker; status changes, prefixed log lines, and the exit code of the run.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cuttingProxy, forwardingProxy, hodei, hodeiDone, lateAnswer, type Proxy } from './helpers.js';
import { useStack } from './fixture.js';

const fx = useStack();
const { env } = fx;

async function pipeline(body: unknown): Promise<void> {
  const res = await fetch(`${fx.stack.orchestrator.url}/api/v1/pipelines`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(201);
}

/** Forwards to `target`; the answer to the first log stream opened starts `delayMs` late (a slow connection). */
function slowFirstLogStream(target: string, delayMs: number): Promise<Proxy> {
  let first = true;
  return forwardingProxy(target, (req, res, upRes) => {
    const slow = first && /\/logs\/stream/.test(req.url ?? '');
    if (slow) first = false;
    setTimeout(() => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    }, slow ? delayMs : 0);
  });
}

describe('hodei pipelines run', () => {
  it('--follow prints a job\'s lines after those of the jobs it waited for, even when their log stream arrives late', async () => {
    await pipeline({
      name: 'cli-order',
      jobs: [
        { name: 'extract', command: 'echo extracted' },
        { name: 'transform', command: 'echo transforming', depends_on: ['extract'] },
        { name: 'load', command: 'echo loaded', depends_on: ['transform'] },
      ],
    });
    const proxy = await slowFirstLogStream(fx.stack.workerManager.url, 1500);
    try {
      const r = await hodeiDone(['pipelines', 'run', 'cli-order', '--follow', '--no-timestamps'], { ...env, HODEI_WORKER_MANAGER_URL: proxy.url });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe('[extract] extracted\n[transform] transforming\n[load] loaded\n');
    } finally {
      await proxy.close();
    }
  }, 60_000);


  it('--follow says why a queued job waits, as run does', async () => {
    await pipeline({ name: 'cli-nowhere', jobs: [{ name: 'stuck', command: 'echo never', labels: { pool: 'nowhere' } }] });
    const run = hodei(['pipelines', 'run', 'cli-nowhere', '--follow'], env);
    await run.waitFor(/^\d\d:\d\d:\d\d\.\d{3} stuck  waiting: no worker with label pool=nowhere$/, 10_000);
    run.child.kill('SIGINT');
    expect((await run.done).code).toBe(130);
  }, 30_000);

  it('--follow resumes a cut event stream after the last event it saw: no snapshot again, no job line twice', async () => {
    await pipeline({
      name: 'cli-resume',
      jobs: [
        { name: 'first', command: 'sleep 1; echo one' },
        { name: 'second', command: 'echo two', depends_on: ['first'] },
      ],
    });
    const proxy = await cuttingProxy(fx.stack.orchestrator.url, /\/pipeline-runs\/[^/]+\/events\/stream$/, /^id:/m);
    try {
      const r = await hodeiDone(['pipelines', 'run', 'cli-resume', '--follow', '--no-timestamps'], { ...env, HODEI_ORCHESTRATOR_URL: proxy.url });
      expect(r.code, r.stderr).toBe(0);
      expect(proxy.streams.length).toBeGreaterThanOrEqual(2);
      const [cut, resumed] = proxy.streams;
      const seen = [...cut!.text.matchAll(/^id: ?(.+)$/gm)].map((m) => m[1]).at(-1);
      expect(seen).toBeDefined();
      expect(resumed!.lastEventId).toBe(seen);
      expect(resumed!.text).not.toMatch(/^event: ?snapshot$/m);
      const jobLines = r.stderrLines.map((l) => /^\d\d:\d\d:\d\d\.\d{3} ((first|second)\s.*)$/.exec(l.text)?.[1]).filter(Boolean);
      expect(jobLines).toEqual([...new Set(jobLines)]);
      expect(jobLines, r.stderr).toContain('second  completed (exit 0)');
      expect(r.stdout).toBe('[first] one\n[second] two\n');
    } finally {
      await proxy.close();
    }
  }, 60_000);


  it('--follow prints status changes and prefixed logs, passes --env to every job, exits 0 when the run completes', async () => {
    await pipeline({
      name: 'cli-etl',
      jobs: [
        { name: 'extract', command: 'echo "extracted for $WHO"' },
        { name: 'transform', command: 'echo transforming; echo "warn: $WHO" >&2', depends_on: ['extract'] },
        { name: 'load', command: 'echo "loaded for $WHO"', depends_on: ['transform'] },
      ],
    });
    const r = await hodeiDone(['pipelines', 'run', 'cli-etl', '--follow', '--env', 'WHO=cli'], env);
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdoutLines.map((l) => l.text);
    expect(out).toEqual([
      expect.stringMatching(/^\d\d:\d\d:\d\d\.\d{3} \[extract\] extracted for cli$/),
      expect.stringMatching(/ \[transform\] transforming$/),
      expect.stringMatching(/ \[load\] loaded for cli$/),
    ]);
    expect(r.stderr).toMatch(/\[transform\] warn: cli/);
    // each job's status changes, in order
    const statuses = (name: string) =>
      r.stderrLines.map((l) => new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} ${name}\\s+(\\w+)`).exec(l.text)?.[1]).filter(Boolean);
    expect(statuses('load')[0]).toBe('waiting');
    expect(statuses('load').at(-1)).toBe('completed');
    expect(statuses('extract').at(-1)).toBe('completed');
    expect(r.stderr).toMatch(/^run [0-9a-f-]{36} completed$/m);
  }, 60_000);

  it("--follow shows a job's control characters instead of letting them drive the terminal, as run does", async () => {
    await pipeline({ name: 'cli-escapes', jobs: [{ name: 'title', command: "printf 'x\\033]0;pwned\\007\\033[2Jy\\033[31mred\\033[0m\\r\\tz\\n'" }] });
    const r = await hodeiDone(['pipelines', 'run', 'cli-escapes', '--follow', '--no-timestamps'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('[title] x^[]0;pwned^G^[[2Jyred^M\tz\n'); // no colour without a terminal
  }, 60_000);

  it('--follow exits 1 when the run fails; the dependent job shows as skipped', async () => {
    await pipeline({
      name: 'cli-broken',
      jobs: [
        { name: 'build', command: 'echo compiling; exit 3' },
        { name: 'deploy', command: 'echo deploying', depends_on: ['build'] },
        { name: 'lint', command: 'true' },
      ],
    });
    const r = await hodeiDone(['pipelines', 'run', 'cli-broken', '--follow', '--no-timestamps'], env);
    expect(r.code).toBe(1);
    expect(r.stdoutLines.map((l) => l.text)).toEqual(['[build] compiling']);
    expect(r.stderr).toMatch(/build\s+failed \(exit 3\)/);
    expect(r.stderr).toMatch(/deploy\s+skipped \(it depends on build, which ended failed\)/);
    expect(r.stderr).toMatch(/^run [0-9a-f-]{36} failed$/m);
    // the summary's columns line up: each job's exit code under the others'
    const summary = r.stderr.slice(r.stderr.lastIndexOf('─') + 2).split('\n');
    const exitColumns = summary.filter((l) => /^(build|lint) /.test(l)).map((l) => l.indexOf(' exit '));
    expect(exitColumns).toEqual([exitColumns[0], exitColumns[0]]);
    expect(exitColumns[0]).toBeGreaterThan(0);
    expect(summary).toContain('deploy  skipped');
  }, 60_000);

  it('without --follow prints the run and exits 0; `pipelines runs` lists it', async () => {
    await pipeline({ name: 'cli-detached', jobs: [{ name: 'only', command: 'true' }] });
    const r = await hodeiDone(['pipelines', 'run', 'cli-detached'], env);
    expect(r.code).toBe(0);
    // the run as the orchestrator answered: its one `true` job may already have completed
    const id = /^pipeline run ([0-9a-f-]{36}) (running|completed)$/m.exec(r.stdout)?.[1];
    expect(id).toBeDefined();
    const f = await hodeiDone(['pipelines', 'follow', id!], env);
    expect(f.code).toBe(0);
    const list = await hodeiDone(['pipelines', 'runs', 'cli-detached'], env);
    expect(list.stdout).toContain(id!);
    expect(list.stdout).toMatch(/completed/);
  }, 60_000);

  it('`pipelines cancel` cancels a run started without --follow; once it has ended, exit 1 saying so', async () => {
    await pipeline({ name: 'cli-cancel', jobs: [{ name: 'forever', command: 'sleep 60' }, { name: 'after', command: 'true', depends_on: ['forever'] }] });
    const started = await hodeiDone(['pipelines', 'run', 'cli-cancel'], env);
    const id = /^pipeline run ([0-9a-f-]{36}) running$/m.exec(started.stdout)?.[1];
    expect(id).toBeDefined();
    const c = await hodeiDone(['pipelines', 'cancel', id!], env);
    expect(c.code).toBe(0);
    expect(c.stdout).toBe(`cancel requested for pipeline run ${id}\n`);
    const f = await hodeiDone(['pipelines', 'follow', id!], env);
    expect(f.code).toBe(130);
    expect(f.stderr).toMatch(/after\s+skipped/);
    const again = await hodeiDone(['pipelines', 'cancel', id!], env);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`pipeline run ${id} is already cancelled`);
  }, 60_000);

  it('a bad --env name is refused with the field named, exit 1', async () => {
    const r = await hodeiDone(['pipelines', 'run', 'cli-detached', '--env', 'NOT-A-NAME=1'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/env\.NOT-A-NAME/);
  }, 30_000);

  it('--follow cancels the run when hodei gets SIGTERM (a CI step cancelled), then exits 143', async () => {
    await pipeline({ name: 'cli-terminated', jobs: [{ name: 'forever', command: 'while :; do echo tick; sleep 0.1; done' }] });
    const run = hodei(['pipelines', 'run', 'cli-terminated', '--follow'], env);
    const started = await run.waitFor(/^pipeline run ([0-9a-f-]{36})/);
    await run.waitFor(/\[forever\] tick$/);
    run.child.kill('SIGTERM');
    const r = await run.done;
    expect(r.code).toBe(143);
    const runId = /^pipeline run ([0-9a-f-]{36})/.exec(started.text)![1];
    expect(r.stderr).toContain(`hodei got SIGTERM: cancelling pipeline run ${runId}\n`);
    let status = '';
    for (const t0 = Date.now(); Date.now() - t0 < 15_000 && status !== 'cancelled'; await new Promise((res) => setTimeout(res, 100)))
      status = ((await (await fetch(`${fx.stack.orchestrator.url}/api/v1/pipeline-runs/${runId}`)).json()) as { status: string }).status;
    expect(status).toBe('cancelled');
  }, 30_000);
});

describe('hodei pipelines run --follow, Ctrl-C', () => {
  it('while the run is being started cancels it once it exists, then follows it to the end (exit 130)', async () => {
    await pipeline({ name: 'cli-early-interrupt', jobs: [{ name: 'forever', command: 'sleep 20; echo never' }] });
    const pid = ((await (await fetch(`${fx.stack.orchestrator.url}/api/v1/pipelines?name=cli-early-interrupt`)).json()) as { id: string }[])[0]!.id;
    const slow = await lateAnswer(fx.stack.orchestrator.url, `/api/v1/pipelines/${pid}/runs`);
    try {
      const run = hodei(['pipelines', 'run', 'cli-early-interrupt', '--follow', '--no-timestamps'], { ...env, HODEI_ORCHESTRATOR_URL: slow.url });
      await slow.asked;
      run.child.kill('SIGINT');
      const r = await run.done;
      expect(r.code, r.stderr).toBe(130);
      const runId = /pipeline run ([0-9a-f-]{36}) \(Ctrl-C cancels it\)/.exec(r.stderr)?.[1];
      expect(r.stderr).toContain(`cancelling pipeline run ${runId}… (Ctrl-C again to detach)`);
      const got = (await (await fetch(`${fx.stack.orchestrator.url}/api/v1/pipeline-runs/${runId}`)).json()) as { status: string };
      expect(got.status).toBe('cancelled');
    } finally {
      await slow.close();
    }
  }, 30_000);
});

describe('hodei apply', () => {
  async function depsByName(name: string): Promise<Record<string, string[]>> {
    const list = (await (await fetch(`${fx.stack.orchestrator.url}/api/v1/pipelines?name=${name}`)).json()) as { id: string }[];
    const p = (await (await fetch(`${fx.stack.orchestrator.url}/api/v1/pipelines/${list[0]!.id}`)).json()) as { jobs: { id: string; name: string; depends_on: string[] }[] };
    const names = new Map(p.jobs.map((j) => [j.id, j.name]));
    return Object.fromEntries(p.jobs.map((j) => [j.name, j.depends_on.map((d) => names.get(d)!)]));
  }

  /** Applies `first` (which must succeed), then `second` from the same file: the second's result. */
  async function reapply(fileName: string, first: string, second: string) {
    const file = join(fx.dir, fileName);
    writeFileSync(file, first);
    expect((await hodeiDone(['apply', '-f', file], env)).code).toBe(0);
    writeFileSync(file, second);
    return { file, r: await hodeiDone(['apply', '-f', file], env) };
  }

  /** The commands of the jobs with this name. */
  async function commandsOf(name: string): Promise<string[]> {
    const jobs = (await (await fetch(`${fx.stack.orchestrator.url}/api/v1/jobs?name=${name}`)).json()) as { name: string; command: string }[];
    return jobs.filter((j) => j.name === name).map((j) => j.command);
  }

  it('updates a pipeline whose file turns a dependency around (a after b instead of b after a)', async () => {
    const { r } = await reapply(
      'turn.yaml',
      'name: cli-turn\njobs:\n  - {name: a, command: echo a}\n  - {name: b, command: echo b, depends_on: [a]}\n  - {name: c, command: echo c, depends_on: [a, b]}\n',
      'name: cli-turn\njobs:\n  - {name: a, command: echo a, depends_on: [b]}\n  - {name: b, command: echo b}\n  - {name: c, command: echo c, depends_on: [a, b]}\n',
    );
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^pipeline cli-turn updated: .* \(2 jobs updated, 1 unchanged, 0 created\)$/m);
    expect(await depsByName('cli-turn')).toEqual({ a: ['b'], b: [], c: ['a', 'b'] });
  }, 30_000);

  it('says a file it changes nothing for is unchanged, and leaves the jobs untouched', async () => {
    const text =
      'name: cli-same\ndescription: same\njobs:\n' +
      '  - {name: same-a, command: echo a, priority: high, tags: [x, x], resources: {memory_bytes: 1000000, cpu_cores: 0.5}, env: {B: "1", A: "2"}}\n' +
      '  - {name: same-b, script: "echo b", depends_on: [same-a]}\n';
    const { file, r } = await reapply('same.yaml', text, text);
    const id = /^pipeline cli-same unchanged: ([0-9a-f-]{36}) \(2 jobs\)\n$/.exec(r.stdout)?.[1];
    expect(id, r.stdout).toBeDefined();
    expect([r.code, r.stderr]).toEqual([0, '']);
    const updatedAt = async () => {
      const jobs = (await (await fetch(`${fx.stack.orchestrator.url}/api/v1/jobs?pipeline_id=${id}`)).json()) as { name: string; updated_at: string }[];
      return Object.fromEntries(jobs.map((j) => [j.name, j.updated_at]));
    };
    const before = await updatedAt();
    const json = await hodeiDone(['apply', '-f', file, '--json'], env);
    expect(JSON.parse(json.stdout)).toMatchObject({ action: 'unchanged', jobs_created: 0, jobs_updated: 0, jobs_unchanged: 2, jobs_not_in_file: [] });
    expect(await updatedAt()).toEqual(before);
    writeFileSync(file, text.replace('echo a', 'echo A'));
    expect((await hodeiDone(['apply', '-f', file], env)).stdout).toMatch(/^pipeline cli-same updated: .* \(1 job updated, 1 unchanged, 0 created\)\n$/);
  }, 30_000);

  it('a file with a bad field in one job changes no job', async () => {
    const { file, r } = await reapply(
      'bad-field.yaml',
      'name: cli-bad-field\njobs:\n  - {name: apply-one, command: echo one}\n  - {name: apply-two, command: echo two}\n',
      'name: cli-bad-field\njobs:\n  - {name: apply-one, command: echo changed}\n  - {name: apply-two, command: echo two, timeout_seconds: -1}\n',
    );
    expect(r.code).toBe(1);
    expect(await commandsOf('apply-one')).toEqual(['echo one']);
    expect(r.stderr).toContain(`${file}: invalid pipeline: jobs.1.timeout_seconds\n  jobs.1.timeout_seconds: Too small`);
  }, 30_000);

  it('a file that names an unknown dependency changes nothing', async () => {
    const { r } = await reapply(
      'unknown.yaml',
      'name: cli-unknown\njobs:\n  - {name: apply-first, command: echo first}\n  - {name: second, command: echo second, depends_on: [apply-first]}\n',
      'name: cli-unknown\njobs:\n  - {name: apply-first, command: echo changed}\n  - {name: second, command: echo second, depends_on: [nope]}\n',
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('job second depends on unknown job nope');
    expect(await commandsOf('apply-first')).toEqual(['echo first']);
  }, 30_000);
});

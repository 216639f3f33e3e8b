// The commands around `run` as a user meets them: lists paged, cancel of what is not running.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createTestEnv, freePort } from '@hodei/platform';
import { startOrchestrator } from '../../../services/orchestrator/src/service.js';
import { startWorkerManager } from '../../../services/worker-manager/src/service.js';
import { cuttingProxy, forwardingProxy, hodei, hodeiDone, MAIN, recoveringProxy } from './helpers.js';
import { useStack } from './fixture.js';

const fx = useStack();
const { env } = fx;

/** hodei given a terminal by `script`, as a user at one runs it; all it wrote there. */
const atTerminal = (args: string[], extra: Record<string, string>) =>
  new Promise<{ code: number | null; text: string }>((resolve) => {
    const child = spawn('script', ['-qec', [process.execPath, MAIN, ...args].map((w) => `"${w}"`).join(' '), '/dev/null'], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NO_COLOR: '1', TERM: 'xterm', ...env, ...extra },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let text = '';
    child.stdout.on('data', (c: Buffer) => (text += c.toString()));
    child.stdin.end();
    child.on('close', (code) => resolve({ code, text }));
  });

describe('hodei executions list', () => {
  it('pages with --limit and --offset, newest first, and says how many there are', async () => {
    for (let i = 1; i <= 3; i++) expect((await hodeiDone(['run', '--name', 'paged', '--', 'echo', String(i)], env)).code).toBe(0);
    const every = JSON.parse((await hodeiDone(['executions', 'list', '--json', '--limit', '1000'], env)).stdout) as { id: string; name: string }[];
    expect(every.filter((e) => e.name === 'paged')).toHaveLength(3);
    const second = await hodeiDone(['executions', 'list', '--json', '--limit', '1', '--offset', '1'], env);
    expect(second.code, second.stderr).toBe(0);
    expect((JSON.parse(second.stdout) as { id: string }[]).map((e) => e.id)).toEqual([every[1]!.id]);
    const table = await hodeiDone(['executions', 'list', '--limit', '2', '--offset', '1'], env);
    expect(table.stdout.trimEnd().split('\n').slice(1).map((l) => l.split(/\s+/)[0])).toEqual([every[1]!.id, every[2]!.id]);
    expect(table.stderr).toBe(`2 of ${every.length} executions (use --limit / --offset for more)\n`);
    const past = await hodeiDone(['executions', 'list', '--offset', String(every.length)], env);
    expect(past.code).toBe(0);
    expect(past.stdout).toBe('');
    expect(past.stderr).toBe(`no executions\n--offset ${every.length} is past the end: there are ${every.length} executions\n`);
  });
});

describe('hodei jobs list --pipeline', () => {
  it('takes the pipeline as every other command does: its name or a unique id prefix', async () => {
    const file = join(fx.dir, 'listed.yaml');
    writeFileSync(file, 'name: listed\njobs:\n  - name: one\n    command: "true"\n  - name: two\n    command: "true"\n    depends_on: [one]\n');
    const applied = await hodeiDone(['apply', '-f', file, '--json'], env);
    expect(applied.code, applied.stderr).toBe(0);
    const pipeline = (JSON.parse(applied.stdout) as { pipeline: { id: string } }).pipeline.id;
    expect((await hodeiDone(['run', '--name', 'one', '--', 'true'], env)).code).toBe(0); // same name, no pipeline
    for (const given of ['listed', pipeline.slice(0, 18), pipeline]) {
      const r = await hodeiDone(['jobs', 'list', '--pipeline', given, '--json'], env);
      expect(r.code, `${given}: ${r.stderr}`).toBe(0);
      const jobs = JSON.parse(r.stdout) as { name: string; pipeline_id: string }[];
      expect(jobs.map((j) => [j.name, j.pipeline_id]).sort()).toEqual([['one', pipeline], ['two', pipeline]]);
    }
  });
});

describe('hodei jobs list --name ""', () => {
  it('is refused naming the filter, not a list of every job (an unset variable in a script)', async () => {
    expect((await hodeiDone(['run', '--name', 'some-job', '--', 'true'], env)).code).toBe(0);
    const r = await hodeiDone(['jobs', 'list', '--name', ''], env);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('hodei: invalid query: name\n  name: must not be empty: leave the parameter out to list everything\n');
  });
});

describe('hodei jobs show --watch', () => {
  it('exits with the code run would have once the job ends: its exit code, or 128 + the signal that killed it', async () => {
    for (const [ending, code] of [['exit 4', 4], ['kill -KILL $$', 137]] as const) {
      const go = join(fx.dir, `go-${code}`);
      const command = `while [ ! -e ${go} ]; do sleep 0.05; done; ${ending}`;
      const { job } = JSON.parse((await hodeiDone(['run', '--detach', '--json', '--command', command], env)).stdout) as { job: string };
      const watch = hodei(['jobs', 'show', job, '--watch'], env);
      await watch.waitFor(/^status\s+(pending|queued|running)$/);
      writeFileSync(go, '');
      const r = await watch.done;
      expect(r.code, r.stderr).toBe(code);
      expect(r.stdout).toMatch(/ failed.*  execution [0-9a-f-]{36}\n$/);
    }
  });
});

describe('hodei jobs cancel', () => {
  it('cancels a running job, and says there is nothing to cancel (exit 1) once it has ended', async () => {
    const run = hodei(['run', '--name', 'to-cancel', '--', 'sh', '-c', 'while :; do echo tick; sleep 0.1; done'], env);
    await run.waitFor(/\[OUT\] tick$/);
    const job = /^job\s+([0-9a-f-]{36})$/m;
    const cancel = await hodeiDone(['jobs', 'cancel', 'to-cancel'], env);
    expect(cancel.code, cancel.stderr).toBe(0);
    const r = await run.done;
    expect(r.code).toBe(130);
    const jobId = job.exec(r.stderr)![1];
    expect(cancel.stdout).toBe(`cancelled 1 execution of job ${jobId}: 1 running (being stopped)\n`);

    const again = await hodeiDone(['jobs', 'cancel', 'to-cancel'], env);
    expect(again.code).toBe(1);
    expect(again.stdout).toBe('');
    const last = JSON.parse((await hodeiDone(['jobs', 'show', jobId!, '--json'], env)).stdout) as { last_execution: { id: string } };
    expect(again.stderr).toBe(`hodei: nothing to cancel: the job's last execution ${last.last_execution.id} ended (cancelled)\n`);

    expect((await hodeiDone(['run', '--name', 'finished', '--', 'true'], env)).code).toBe(0);
    const done = await hodeiDone(['jobs', 'cancel', 'finished'], env);
    expect(done.code).toBe(1);
    expect(done.stdout).toBe('');
    expect(done.stderr).toMatch(/^hodei: nothing to cancel: the job's last execution [0-9a-f-]{36} ended \(completed\)\n$/);
  }, 30_000);
});

describe('hodei jobs cancel of a backlog', () => {
  it('says how many executions it cancelled, queued and running; --json has the counts', async () => {
    // 5 of the worker's 8 cores each: one runs, the others queue behind it
    const started = await hodeiDone(['run', '--detach', '--json', '--name', 'backlog', '--cpu', '5', '--', 'sleep', '30'], env);
    expect(started.code, started.stderr).toBe(0);
    const { job, execution } = JSON.parse(started.stdout) as { job: string; execution: string };
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${fx.stack.workerManager.url}/api/v1/execute`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ job_id: job }),
      });
      expect(res.status).toBe(202);
    }
    const status = async () => (JSON.parse((await hodeiDone(['executions', 'show', execution, '--json'], env)).stdout) as { status: string }).status;
    for (let t = Date.now(); (await status()) !== 'running'; ) {
      if (Date.now() - t > 15_000) throw new Error('the first execution never ran');
      await new Promise((r) => setTimeout(r, 100));
    }
    const cancel = await hodeiDone(['jobs', 'cancel', job.slice(0, 13)], env);
    expect(cancel.code, cancel.stderr).toBe(0);
    expect(cancel.stdout).toBe(`cancelled 3 executions of job ${job}: 2 queued, 1 running (being stopped)\n`);

    const again = await hodeiDone(['run', '--detach', '--json', '--name', 'backlog', '--cpu', '5', '--label', 'pool=nowhere', '--', 'true'], env);
    const queuedJob = (JSON.parse(again.stdout) as { job: string }).job;
    const json = await hodeiDone(['jobs', 'cancel', queuedJob, '--json'], env);
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ id: queuedJob, cancelled: { executions: 1, queued: 1, running: 0 } });
  }, 60_000);

  it('at a terminal, says what it waits for while the orchestrator cancels, and for how long', async () => {
    const queued = await hodeiDone(['run', '--detach', '--json', '--name', 'slow-cancel', '--label', 'pool=nowhere', '--', 'true'], env);
    const { job } = JSON.parse(queued.stdout) as { job: string };
    // a backlog the orchestrator takes a while to cancel: its answer comes 1.5 s late
    const slow = await forwardingProxy(fx.stack.orchestrator.url, (req, res, upRes) => {
      setTimeout(() => (res.writeHead(upRes.statusCode ?? 502, upRes.headers), upRes.pipe(res)), req.url?.endsWith('/cancel') ? 1500 : 0);
    });
    try {
      const r = await atTerminal(['jobs', 'cancel', job], { HODEI_ORCHESTRATOR_URL: slow.url });
      expect(r.code, r.text).toBe(0);
      // was: nothing until the answer
      expect(r.text).toContain(`\r\x1b[2Kcancelling the executions of job ${job} (Ctrl-C stops waiting, not the cancel)… 1s\r\x1b[2K`);
      expect(r.text).toMatch(new RegExp(`\\r\\x1b\\[2Kcancelled 1 execution of job ${job}: 1 queued\\r\\n$`));
    } finally {
      await slow.close();
    }
  }, 30_000);
});

describe('a name shorter than an id prefix (4 characters)', () => {
  it('names its job wherever a job is asked for, when it is only hex digits too (db, add); else says what it is missing', async () => {
    for (const name of ['db', 'add']) {
      const ran = await hodeiDone(['run', '--json', '--name', name, '--', 'echo', `I am ${name}`], env);
      expect(ran.code, ran.stderr).toBe(0);
      const { job } = JSON.parse(ran.stdout) as { job: string };
      // was: hodei: "db" is too short: give at least 4 characters of the job id
      const show = await hodeiDone(['jobs', 'show', name, '--json'], env);
      expect(show.code, show.stderr).toBe(0);
      expect((JSON.parse(show.stdout) as { id: string }).id).toBe(job);
      const logs = await hodeiDone(['logs', name, '--raw'], env);
      expect([logs.code, logs.stdout], logs.stderr).toEqual([0, `I am ${name}\n`]);
    }
    const none = await hodeiDone(['jobs', 'show', 'fed'], env);
    expect([none.code, none.stdout]).toEqual([1, '']);
    expect(none.stderr).toBe('hodei: no job is named "fed", and an id prefix needs at least 4 characters\n');
    const execution = await hodeiDone(['executions', 'show', 'db'], env);
    expect([execution.code, execution.stderr]).toEqual([1, 'hodei: "db" is too short: give at least 4 characters of the execution id\n']);
  });
});

describe('hodei executions list --worker', () => {
  it('takes the name of an agent started with hodei worker (in the scheduler\'s registry, not the worker-manager\'s list); workers list names the agent under its list', async () => {
    const nats = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
    const agent = hodei(['worker', '--nats', nats, '--prefix', fx.stack.env.natsPrefix, '--scheduler', fx.stack.scheduler.url, '--name', 'agent-x', '--label', 'pool=agent-x'], env);
    try {
      await agent.waitFor(/running with \d+ slots/, 20_000);
      const ran = await hodeiDone(['run', '--json', '--label', 'pool=agent-x', '--', 'echo', 'on the agent'], env);
      expect(ran.code, ran.stderr).toBe(0);
      const { execution } = JSON.parse(ran.stdout) as { execution: string };
      // was: hodei: no worker matches "agent-x"
      const listed = await hodeiDone(['executions', 'list', '--worker', 'agent-x', '--json'], env);
      expect(listed.code, listed.stderr).toBe(0);
      expect((JSON.parse(listed.stdout) as { id: string }[]).map((e) => e.id)).toEqual([execution]);
      const managed = await hodeiDone(['executions', 'list', '--worker', 'cli-test', '--json', '--limit', '1000'], env);
      expect(managed.code, managed.stderr).toBe(0);
      expect((JSON.parse(managed.stdout) as { id: string }[]).map((e) => e.id)).not.toContain(execution);
      const unknown = await hodeiDone(['executions', 'list', '--worker', 'nobody'], env);
      expect([unknown.code, unknown.stderr]).toEqual([1, 'hodei: no worker matches "nobody"\n']);
      // workers list (the worker-manager's) says there is one more, instead of leaving it out unsaid
      const workers = await hodeiDone(['workers', 'list'], env);
      expect(workers.code, workers.stderr).toBe(0);
      expect(workers.stdout).not.toContain('agent-x');
      expect(workers.stderr).toMatch(/^and 1 agent started with hodei worker \(in the scheduler's registry\): agent-x \(online, \d+ slots\)\n$/);
    } finally {
      agent.child.kill('SIGINT');
      await agent.done;
    }
  }, 40_000);
});

describe('hodei schedules run', () => {
  it('fires a paused schedule now, named by its name, and show marks the firing manual; an unknown one: exit 1', async () => {
    const created = await hodeiDone(['run', '--json', '--name', 'by-hand', '--', 'true'], env);
    expect(created.code, created.stderr).toBe(0);
    const jobId = (JSON.parse(created.stdout) as { job: string }).job;
    const sch = await hodeiDone(['schedules', 'create', '--job', jobId, '--cron', '0 0 1 1 *', '--name', 'yearly', '--paused', '--json'], env);
    expect(sch.code, sch.stderr).toBe(0);
    const sid = (JSON.parse(sch.stdout) as { id: string }).id;

    const run = await hodeiDone(['schedules', 'run', 'yearly'], env);
    expect(run.code, run.stderr).toBe(0);
    const firing = /^firing\s+([0-9a-f-]{36}) \(manual\)$/m.exec(run.stdout)?.[1];
    const execution = /^execution\s+([0-9a-f-]{36})$/m.exec(run.stdout)?.[1];
    expect(firing && execution, run.stdout).toBeTruthy();
    expect(run.stdout).toMatch(new RegExp(`^schedule\\s+${sid}$`, 'm'));
    expect(run.stdout).toMatch(/^outcome\s+fired$/m);

    const show = await hodeiDone(['schedules', 'show', sid.slice(0, 13)], env);
    expect(show.code, show.stderr).toBe(0);
    const rows = show.stdout.split('\n').filter((l) => l.includes(execution!));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatch(/\smanual\s.*\sfired\s+execution [0-9a-f-]{36}$/);
    const json = JSON.parse((await hodeiDone(['schedules', 'show', sid, '--json'], env)).stdout) as { status: string; runs: { id: string; manual: boolean }[] };
    expect(json.status).toBe('paused');
    expect(json.runs).toEqual([expect.objectContaining({ id: firing, manual: true })]);

    const unknown = await hodeiDone(['schedules', 'run', 'no-such-schedule'], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stdout).toBe('');
    expect(unknown.stderr).toBe('hodei: no schedule matches "no-such-schedule"\n');
  }, 30_000);
});

describe('hodei schedules create --at', () => {
  it('says a one-shot schedule runs once at its time, not when a cron runs next', async () => {
    const created = await hodeiDone(['run', '--json', '--name', 'once-later', '--', 'true'], env);
    expect(created.code, created.stderr).toBe(0);
    const jobId = (JSON.parse(created.stdout) as { job: string }).job;
    const tz = { ...env, TZ: 'UTC' };
    const at = '2099-06-01T08:30:00Z';
    const once = await hodeiDone(['schedules', 'create', '--job', jobId, '--at', at, '--name', 'once'], tz);
    expect(once.code, once.stderr).toBe(0);
    expect(once.stdout).toMatch(/^schedule [0-9a-f-]{36} created; runs once at 2099-06-01 08:30:00 \(local time\)\n$/);
    const paused = await hodeiDone(['schedules', 'create', '--job', jobId, '--at', at, '--name', 'once-paused', '--paused'], tz);
    expect(paused.stdout).toMatch(/^schedule [0-9a-f-]{36} created; runs once at 2099-06-01 08:30:00 \(local time\), paused\n$/);
    const cron = await hodeiDone(['schedules', 'create', '--job', jobId, '--cron', '0 3 * * *', '--tz', 'Europe/Madrid', '--name', 'nightly'], tz);
    expect(cron.stdout).toMatch(/^schedule [0-9a-f-]{36} created; next run \d{4}-\d\d-\d\d \d\d:00:00 \(local time; cron in Europe\/Madrid\)\n$/);
  }, 30_000);
});

describe('hodei executions cancel', () => {
  it('cancels an execution without a job, and exits 1 naming how it ended once it has', async () => {
    const res = await fetch(`${fx.stack.workerManager.url}/api/v1/execute`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ command: 'while :; do echo tick; sleep 0.1; done' }),
    });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const status = async () => ((await (await fetch(`${fx.stack.workerManager.url}/api/v1/executions/${id}`)).json()) as { status: string }).status;
    for (let i = 0; i < 100 && (await status()) !== 'running'; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await status()).toBe('running');

    const cancel = await hodeiDone(['executions', 'cancel', id.slice(0, 13)], env);
    expect(cancel.code, cancel.stderr).toBe(0);
    expect(cancel.stdout).toBe(`cancel requested for execution ${id}\n`);
    for (let i = 0; i < 100 && (await status()) !== 'cancelled'; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await status()).toBe('cancelled');

    const again = await hodeiDone(['executions', 'cancel', id], env);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`hodei: execution ${id} already ended (cancelled)\n`);
  }, 30_000);
});

/** A `true` execution of no job, completed and finished `age` ago (an interval); what asks for it. */
async function finishedExecution(age: string): Promise<() => Promise<Response>> {
  const { workerManager } = fx.stack;
  const res = await fetch(`${workerManager.url}/api/v1/execute`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ command: 'true' }) });
  const { id } = (await res.json()) as { id: string };
  const shown = () => fetch(`${workerManager.url}/api/v1/executions/${id}`);
  for (let i = 0; i < 100 && ((await (await shown()).json()) as { status: string }).status !== 'completed'; i++) await new Promise((r) => setTimeout(r, 100));
  await workerManager.ctx.db.query(`UPDATE executions SET finished_at = now() - $2::interval WHERE id = $1`, [id, age]);
  return shown;
}

describe('hodei jobs cleanup --dry-run', () => {
  it('says how many of each kind would go, and deletes none of it', async () => {
    const { orchestrator, workerManager } = fx.stack;
    const post = async (url: string, body: unknown) =>
      (await (await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json()) as { id: string };
    const status = async (id: string) => ((await (await fetch(`${workerManager.url}/api/v1/executions/${id}`)).json()) as { status: string }).status;
    const job = await post(`${orchestrator.url}/api/v1/jobs`, { name: 'history', command: 'true' });
    // two executions of a job that stays (its newest is kept) and one of no job, over two days ago
    const ids: string[] = [];
    for (const body of [{ job_id: job.id }, { job_id: job.id }, { command: 'true' }]) {
      const { id } = await post(`${workerManager.url}/api/v1/execute`, body);
      for (let i = 0; i < 100 && (await status(id)) !== 'completed'; i++) await new Promise((r) => setTimeout(r, 100));
      ids.push(id);
    }
    await workerManager.ctx.db.query("UPDATE executions SET finished_at = now() - interval '2 days' WHERE id = ANY ($1::uuid[])", [ids]);

    const dry = await hodeiDone(['jobs', 'cleanup', '--older-than', '1d', '--dry-run'], env);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toBe('would delete 0 jobs, 2 executions (1 older of jobs that stay, 1 of no job) with their logs, and 0 pipeline runs\n');
    for (const id of ids) expect(await status(id)).toBe('completed');
  }, 30_000);

  it('at a terminal, shows what would go and deletes it only once told yes', async () => {
    const shown = await finishedExecution('2 days');
    // `script` gives hodei a terminal; what it is sent is the answer typed
    const atTerminal = (answer: string) =>
      new Promise<{ code: number | null; text: string }>((resolve) => {
        const child = spawn('script', ['-qec', `"${process.execPath}" "${MAIN}" jobs cleanup --older-than 1d`, '/dev/null'], {
          env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NO_COLOR: '1', TERM: 'dumb', ...env },
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        let text = '';
        child.stdout.on('data', (c: Buffer) => (text += c.toString()));
        child.stdin.end(answer);
        child.on('close', (code) => resolve({ code, text }));
      });

    const no = await atTerminal('n\n');
    expect(no.text).toMatch(/would delete \d+ jobs?, \d+ executions? \([^)]*\d+ of no job\) with their logs/);
    expect(no.text).toMatch(/delete them\? \[y\/N\]/);
    expect(no.text).toMatch(/hodei: nothing deleted/);
    expect(no.code).toBe(1);
    expect((await shown()).status).toBe(200); // was: deleted without a question

    const yes = await atTerminal('y\n');
    expect(yes.text).toMatch(/\bdeleted \d+ jobs?, \d+ executions?/);
    expect(yes.code).toBe(0);
    expect((await shown()).status).toBe(404);
  }, 30_000);
});

describe('hodei jobs cleanup while the orchestrator counts or deletes', () => {
  it('at a terminal, says what it waits for and for how long; nothing of it through a pipe or with --json', async () => {
    // an installation where counting takes a while: the orchestrator's answer comes 2.2 s late
    const slow = await forwardingProxy(fx.stack.orchestrator.url, (req, res, upRes) => {
      setTimeout(() => (res.writeHead(upRes.statusCode ?? 502, upRes.headers), upRes.pipe(res)), req.url === '/api/v1/cleanup' ? 2200 : 0);
    });
    try {
      const dry = await atTerminal(['jobs', 'cleanup', '--older-than', '30d', '--dry-run'], { HODEI_ORCHESTRATOR_URL: slow.url });
      expect(dry.code, dry.text).toBe(0);
      // was: nothing at all until the answer
      expect(dry.text).toContain('\r\x1b[2Kcounting what would be deleted… 0s\r\x1b[2Kcounting what would be deleted… 1s');
      expect(dry.text).toMatch(/\r\x1b\[2Kcounted in 2\.\d\ds\r\nwould delete \d+ jobs?, /);

      const real = await atTerminal(['jobs', 'cleanup', '--older-than', '30d', '--yes'], { HODEI_ORCHESTRATOR_URL: slow.url });
      expect(real.code, real.text).toBe(0);
      expect(real.text).toContain('\r\x1b[2Kdeleting (Ctrl-C stops waiting, not the cleanup)… 1s');
      expect(real.text).toMatch(/\r\x1b\[2Kdeleted in 2\.\d\ds\r\ndeleted \d+ jobs?, /);

      const json = await atTerminal(['jobs', 'cleanup', '--older-than', '30d', '--dry-run', '--json'], { HODEI_ORCHESTRATOR_URL: slow.url });
      expect(json.code, json.text).toBe(0);
      expect(JSON.parse(json.text)).toMatchObject({ dry_run: true });

      const piped = await hodeiDone(['jobs', 'cleanup', '--older-than', '30d', '--dry-run'], { ...env, HODEI_ORCHESTRATOR_URL: slow.url });
      expect(piped.code, piped.stderr).toBe(0);
      expect(piped.stderr).toBe('');
      expect(piped.stdout).toMatch(/^would delete \d+ jobs?, [^\n]*\n$/);
    } finally {
      await slow.close();
    }
  }, 30_000);

  it('Ctrl-C stops the waiting (exit 130) and says the orchestrator goes on with the cleanup, which it does', async () => {
    const shown = await finishedExecution('40 days');
    let asked: () => void = () => undefined;
    const cleanupAsked = new Promise<void>((resolve) => (asked = resolve));
    const held = await forwardingProxy(fx.stack.orchestrator.url, (req, res, upRes) => {
      if (req.url !== '/api/v1/cleanup') return void (res.writeHead(upRes.statusCode ?? 502, upRes.headers), upRes.pipe(res));
      asked(); // the orchestrator has done the cleanup; its answer never reaches hodei
    });
    try {
      const run = hodei(['jobs', 'cleanup', '--older-than', '30d', '--yes'], { ...env, HODEI_ORCHESTRATOR_URL: held.url });
      await cleanupAsked;
      run.child.kill('SIGINT');
      const r = await run.done;
      expect(r.code).toBe(130);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe('hodei: interrupted: the orchestrator goes on with the cleanup (hodei jobs stats shows what is left)\n');
      expect((await shown()).status).toBe(404);
    } finally {
      await held.close();
    }
  }, 30_000);
});

describe('hodei logs -f', () => {
  it('ends with how the execution ended, and exits with the code run would have: its exit code, or 128 + the signal that killed it', async () => {
    const killed = JSON.parse((await hodeiDone(['run', '--json', '--command', 'echo bye; kill -KILL $$'], env)).stdout) as { execution: string };
    const r = await hodeiDone(['logs', '-f', killed.execution, '--raw'], env);
    expect(r.code).toBe(137);
    expect(r.stdout).toBe('bye\n');
    expect(r.stderr).toMatch(/^── failed \(signal SIGKILL, exit 137\) in \d+ms\n$/);
    const exited = JSON.parse((await hodeiDone(['run', '--json', '--', 'sh', '-c', 'exit 3'], env)).stdout) as { execution: string };
    const three = await hodeiDone(['logs', '-f', exited.execution], env);
    expect(three.code).toBe(3);
    expect(three.stderr).toMatch(/^── failed \(exit 3\) in \d+ms\n$/);
    // without -f, a past execution's lines: how it ended is not the command's outcome
    expect((await hodeiDone(['logs', exited.execution], env)).code).toBe(0);
  });

  it('waits out a worker-manager away, then answering 503, saying so, and follows to the end', async () => {
    const ran = JSON.parse((await hodeiDone(['run', '--json', '--', 'sh', '-c', 'echo one; echo two'], env)).stdout) as { execution: string };
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const logs = hodei(['logs', '-f', ran.execution, '--raw'], { ...env, HODEI_WORKER_MANAGER_URL: url });
    let proxy: Awaited<ReturnType<typeof recoveringProxy>> | undefined;
    try {
      await logs.waitFor(/retrying…$/);
      await new Promise((resolve) => setTimeout(resolve, 500));
      proxy = await recoveringProxy(fx.stack.workerManager.url, port, /\/logs\/stream/, 2);
      const r = await logs.done;
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe('one\ntwo\n');
      expect(proxy.unavailableAnswers()).toBe(2);
      expect(logs.stderrLines.map((l) => l.text)).toEqual([
        `cannot reach the worker-manager at ${url} (connection refused); retrying…`,
        `the worker-manager at ${url} answered 503: the database is unavailable; try again; retrying…`,
        'log stream back',
        expect.stringMatching(/^── completed \(exit 0\) in \d+ms$/),
      ]);
    } finally {
      logs.child.kill('SIGKILL');
      await proxy?.close();
    }
  });
});

describe('hodei events -f', () => {
  it('goes on streaming when the stream breaks (the worker-manager restarting), and says so', async () => {
    const proxy = await cuttingProxy(fx.stack.workerManager.url, /\/api\/v1\/events\/stream$/, /^event: ?connected$/m);
    const events = hodei(['events', '-f', '--json'], { ...env, HODEI_WORKER_MANAGER_URL: proxy.url });
    try {
      await events.waitFor(/^event stream back; changes while it was down are not shown$/);
      const run = JSON.parse((await hodeiDone(['run', '--json', '--', 'echo', 'after the break'], env)).stdout) as { execution: string };
      const done = await events.waitFor(new RegExp(`"execution_id":"${run.execution}".*"status":"completed"`));
      expect(JSON.parse(done.text)).toMatchObject({ type: 'status_changed', execution_id: run.execution, status: 'completed' });
      expect(events.stderrLines.map((l) => l.text)).toEqual(['streaming events (Ctrl-C to stop)', 'the event stream broke; reconnecting…', 'event stream back; changes while it was down are not shown']);
      expect(proxy.streams).toHaveLength(2);
      events.child.kill('SIGINT');
      expect((await events.done).code).toBe(130);
    } finally {
      events.child.kill('SIGKILL');
      await proxy.close();
    }
  });

  it('waits out a worker-manager answering 503 (its database away) to the stream, saying so', async () => {
    const proxy = await recoveringProxy(fx.stack.workerManager.url, await freePort(), /\/events\/stream$/, 2);
    const events = hodei(['events', '-f', '--json'], { ...env, HODEI_WORKER_MANAGER_URL: proxy.url });
    try {
      await events.waitFor(/^streaming events/);
      const run = JSON.parse((await hodeiDone(['run', '--json', '--', 'true'], env)).stdout) as { execution: string };
      await events.waitFor(new RegExp(`"execution_id":"${run.execution}".*"status":"completed"`));
      expect(proxy.unavailableAnswers()).toBe(2);
      expect(events.stderrLines.map((l) => l.text)).toEqual([
        `the worker-manager at ${proxy.url} answered 503: the database is unavailable; try again; retrying…`,
        'streaming events (Ctrl-C to stop)',
      ]);
      events.child.kill('SIGINT');
      expect((await events.done).code).toBe(130);
    } finally {
      events.child.kill('SIGKILL');
      await proxy.close();
    }
  });
});

describe('global options', () => {
  it('apply before or after the command, the one nearer the command winning', async () => {
    const down = 'http://127.0.0.1:1';
    for (const args of [['--orchestrator-url', down, 'jobs', 'list'], ['jobs', '--orchestrator-url', down, 'list'], ['jobs', 'list', '--orchestrator-url', down]]) {
      const r = await hodeiDone(args, env);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/^hodei: cannot reach the orchestrator at http:\/\/127\.0\.0\.1:1 /);
    }
    const nearer = await hodeiDone(['--orchestrator-url', down, 'jobs', 'list', '--json', '--orchestrator-url', env.HODEI_ORCHESTRATOR_URL!], env);
    expect(nearer.code, nearer.stderr).toBe(0);
    expect(Array.isArray(JSON.parse(nearer.stdout))).toBe(true);
    // --no-color given before the command is not undone by the command's own (unset) --no-color
    const coloured = await hodeiDone(['workers', 'list'], { ...env, NO_COLOR: '', FORCE_COLOR: '1' });
    expect(coloured.stdout).toContain('\x1b[36mrunning\x1b[0m');
    for (const args of [['--no-color', 'workers', 'list'], ['workers', 'list', '--no-color']]) {
      const r = await hodeiDone(args, { ...env, NO_COLOR: '', FORCE_COLOR: '1' });
      expect(r.stdout).toMatch(/ running /);
      expect(r.stdout + r.stderr).not.toContain('\x1b[');
    }
  });
});

describe('hodei workers start', () => {
  it('returns once the scheduler lists the worker online; a worker that exits before registering is an error', async () => {
    const r = await hodeiDone(['workers', 'start', '--name', 'fresh', '--slots', '1', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const id = (JSON.parse(r.stdout) as { id: string }).id;
    const registered = await fetch(`${fx.stack.scheduler.url}/api/v1/workers/${id}`);
    expect(registered.status).toBe(200);
    expect(((await registered.json()) as { status: string }).status).toBe('online');
    expect((await hodeiDone(['workers', 'stop', '--force', id], env)).code).toBe(0);

    // a worker-manager (an installation of its own) whose scheduler URL is an orchestrator's: the
    // agent's registration is refused (404) and it exits
    const other = createTestEnv();
    const urls = { orchestrator: fx.stack.orchestrator.url, scheduler: fx.stack.orchestrator.url, 'worker-manager': fx.stack.workerManager.url };
    const misled = await startWorkerManager(other.config('worker-manager', { urls, killGraceMs: 1000 }));
    try {
      const refused = await hodeiDone(['workers', 'start', '--name', 'misled'], { ...env, HODEI_WORKER_MANAGER_URL: misled.url });
      expect(refused.code).toBe(1);
      expect(refused.stdout).toBe('');
      expect(refused.stderr).toMatch(/^hodei: worker [0-9a-f-]{36} exited \(exit code 1\) before it registered with the scheduler: its output is in the worker-manager's log\n$/);
    } finally {
      await misled.stop();
      await other.cleanup();
    }
  }, 60_000);
});

describe('hodei workers show / stop by name', () => {
  it('refuse a name several workers share, listing their ids and status; an id prefix or a unique name works', async () => {
    const started: string[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await hodeiDone(['workers', 'start', '--name', 'twin', '--slots', '1', '--json'], env);
      expect(r.code, r.stderr).toBe(0);
      started.push((JSON.parse(r.stdout) as { id: string }).id);
    }
    const [older, newer] = started as [string, string];
    for (const verb of ['show', 'stop']) {
      const r = await hodeiDone(['workers', verb, 'twin'], env);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      const lines = r.stderr.trimEnd().split('\n');
      expect(lines[0]).toBe('hodei: "twin" is the name of 2 workers; give the id (or a unique prefix) of the one you mean');
      expect(lines.slice(1)).toEqual([
        expect.stringMatching(new RegExp(`^  ${newer}  worker +twin \\(running, started \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\)$`)),
        expect.stringMatching(new RegExp(`^  ${older}  worker +twin \\(running, started `)),
      ]);
    }
    const listed = JSON.parse((await hodeiDone(['workers', 'list', '--json'], env)).stdout) as { id: string; status: string }[];
    expect(listed.filter((w) => started.includes(w.id)).map((w) => w.status)).toEqual(['running', 'running']);

    const unique = await hodeiDone(['workers', 'show', 'cli-test', '--json'], env);
    expect(unique.code, unique.stderr).toBe(0);
    expect((JSON.parse(unique.stdout) as { id: string }).id).toBe(fx.stack.workerId);
    for (const id of started) {
      const stop = await hodeiDone(['workers', 'stop', '--force', id.slice(0, 18)], env);
      expect(stop.code, stop.stderr).toBe(0);
      expect(stop.stdout).toMatch(new RegExp(`^worker ${id} `));
    }
  }, 60_000);

  it('stop: a name a live worker shares with stopped ones means the live one', async () => {
    const start = async () => {
      const r = await hodeiDone(['workers', 'start', '--name', 'reborn', '--slots', '1', '--json'], env);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { id: string }).id;
    };
    const first = await start();
    expect((await hodeiDone(['workers', 'stop', '--force', 'reborn'], env)).stdout).toBe(`worker ${first} stopped\n`);
    const second = await start();
    const stopped = await hodeiDone(['workers', 'stop', '--force', 'reborn'], env);
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(stopped.stdout).toBe(`worker ${second} stopped\n`);

    const both = [await start(), await start()];
    const refused = await hodeiDone(['workers', 'stop', 'reborn'], env);
    expect(refused.code).toBe(1);
    const lines = refused.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe('hodei: "reborn" is the name of 2 workers; give the id (or a unique prefix) of the one you mean');
    expect(lines.slice(1).map((l) => l.trim().split(/\s+/)[0])).toEqual([both[1], both[0]]);
    for (const id of both) expect((await hodeiDone(['workers', 'stop', '--force', id], env)).code).toBe(0);
  }, 60_000);
});

describe('hodei workers show of a worker killed with kill -9', () => {
  it('says the process is gone and how it ended', async () => {
    const r = await hodeiDone(['workers', 'start', '--name', 'doomed', '--slots', '1', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const w = JSON.parse(r.stdout) as { id: string; pid: number };
    process.kill(w.pid, 'SIGKILL');
    const exited = async () => JSON.parse((await hodeiDone(['workers', 'show', w.id, '--json'], env)).stdout) as { status: string };
    for (let i = 0; i < 100 && (await exited()).status !== 'exited'; i++) await new Promise((res) => setTimeout(res, 100));
    const shown = await hodeiDone(['workers', 'show', w.id], env);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/^status\s+exited$/m);
    expect(shown.stdout).toMatch(/^ended\s+killed by SIGKILL; gone \(forgotten after HODEI_FORGET_WORKERS_AFTER_MS, 24 h by default\)$/m);
  }, 30_000);
});

describe('what the user got wrong, said plainly', () => {
  it('a URL that points at another service names the service it should be', async () => {
    const r = await hodeiDone(['jobs', 'list'], { ...env, HODEI_ORCHESTRATOR_URL: env.HODEI_SCHEDULER_URL! });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`hodei: ${env.HODEI_SCHEDULER_URL} has no GET /api/v1/jobs: is it the orchestrator? (check --url / --orchestrator-url)\n`);
  });

  it('a token the service refuses is called refused, not missing', async () => {
    const guarded = await startOrchestrator(fx.stack.env.config('orchestrator', { apiToken: 's3cret' }));
    try {
      const none = await hodeiDone(['jobs', 'list'], { ...env, HODEI_ORCHESTRATOR_URL: guarded.url });
      expect(none.code).toBe(1);
      expect(none.stderr).toMatch(/^hodei: .+: set HODEI_API_TOKEN or pass --token\n$/);
      const wrong = await hodeiDone(['jobs', 'list', '--token', 'guess'], { ...env, HODEI_ORCHESTRATOR_URL: guarded.url });
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toMatch(/^hodei: the orchestrator refused the token \(.+\): check --token \/ HODEI_API_TOKEN\n$/);
      const right = await hodeiDone(['jobs', 'list', '--json'], { ...env, HODEI_ORCHESTRATOR_URL: guarded.url, HODEI_API_TOKEN: 's3cret' });
      expect(right.code, right.stderr).toBe(0);
    } finally {
      await guarded.stop();
    }
  });

  it('run --workdir with a relative path is refused naming the flag, before anything is created', async () => {
    const r = await hodeiDone(['run', '--workdir', 'build', '--', 'pwd'], { ...env, HODEI_URL: 'http://127.0.0.1:1', HODEI_ORCHESTRATOR_URL: '', HODEI_WORKER_MANAGER_URL: '' });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("hodei: --workdir must be an absolute path: it is taken on the worker, whose own directory is not yours (/srv/app, not build)\nrun 'hodei run --help' for usage\n");
  });

  it('status says which service refuses the token (its /health is open to all), exit 1; with the right one, ok', async () => {
    const guarded = await startOrchestrator(fx.stack.env.config('orchestrator', { apiToken: 's3cret' }));
    try {
      const wrong = await hodeiDone(['status', '--token', 'guess'], { ...env, HODEI_ORCHESTRATOR_URL: guarded.url });
      expect(wrong.code).toBe(1);
      expect(wrong.stdout).toMatch(/^orchestrator +\S+ +token refused /m);
      expect(wrong.stdout).toMatch(/^scheduler +\S+ +ok /m);
      expect(wrong.stderr).toBe('hodei: orchestrator refused the token: check --token / HODEI_API_TOKEN\n');
      const none = await hodeiDone(['status'], { ...env, HODEI_ORCHESTRATOR_URL: guarded.url });
      expect(none.code).toBe(1);
      expect(none.stderr).toBe('hodei: orchestrator needs a token: set HODEI_API_TOKEN or pass --token\n');
      const right = await hodeiDone(['status'], { ...env, HODEI_ORCHESTRATOR_URL: guarded.url, HODEI_API_TOKEN: 's3cret' });
      expect(right.code, right.stderr).toBe(0);
    } finally {
      await guarded.stop();
    }
  });

  it('a token no header can carry (a line ending from a token file) is named, never quoted', async () => {
    // it was 'cannot reach the orchestrator … ("Bearer s3cret\r" is an invalid header value)', exit 2
    const rule = 'must be printable ASCII, with no space at either end and no newline or other control character (a line ending read from a file?)';
    const fromEnv = await hodeiDone(['jobs', 'list'], { ...env, HODEI_API_TOKEN: 's3cret-from-file\r' });
    expect(fromEnv.code).toBe(1);
    expect(fromEnv.stderr).toBe(`hodei: HODEI_API_TOKEN: ${rule}\n`);
    const fromFlag = await hodeiDone(['jobs', 'list', '--token', 's3cret\nsecond line'], env);
    expect(fromFlag.code).toBe(2);
    expect(fromFlag.stderr).toBe(`hodei: --token: ${rule}\nrun 'hodei jobs list --help' for usage\n`);
  });

  it('pipelines follow wants a whole run id, and says so before anything else', async () => {
    const short = await hodeiDone(['pipelines', 'follow', '01a2'], env);
    expect(short.code).toBe(1);
    expect(short.stderr).toBe('hodei: "01a2" is not a pipeline run id: give the whole id (hodei pipelines runs PIPELINE lists them)\n');
    const unknown = await hodeiDone(['pipelines', 'follow', '00000000-0000-4000-8000-000000000000'], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe('hodei: pipeline run 00000000-0000-4000-8000-000000000000 not found\n');
  });

  it('logs --tail 0 prints no old line, also when following', async () => {
    const { execution } = JSON.parse((await hodeiDone(['run', '--json', '--', 'sh', '-c', 'echo one; echo two'], env)).stdout) as { execution: string };
    const none = await hodeiDone(['logs', execution, '--tail', '0', '--raw'], env);
    expect(none.code, none.stderr).toBe(0);
    expect(none.stdout).toBe('');
    const followed = await hodeiDone(['logs', execution, '--tail', '0', '-f', '--raw'], env);
    expect(followed.code, followed.stderr).toBe(0);
    expect(followed.stdout).toBe('');
    expect(followed.stderr).toMatch(/^── completed \(exit 0\) in \d+ms\n$/);
    expect((await hodeiDone(['logs', execution, '--tail', '1', '--raw'], env)).stdout).toBe('two\n');
  });

  it('logs --tail past one page of 10,000 lines prints that many', async () => {
    const { execution } = JSON.parse((await hodeiDone(['run', '--json', '--', 'seq', '1', '12000'], env)).stdout) as { execution: string };
    const r = await hodeiDone(['logs', execution, '--tail', '11000', '--raw'], env);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split('\n').slice(0, -1);
    expect([lines.length, lines[0], lines.at(-1)]).toEqual([11000, '1001', '12000']);
  }, 30_000);

  it('logs prints each page of a long log as it comes, and --json gives the same document whole', async () => {
    const { execution } = JSON.parse((await hodeiDone(['run', '--json', '--', 'seq', '1', '12000'], env)).stdout) as { execution: string };
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    // the second page is held back until the first one's lines have been printed
    const proxy = await forwardingProxy(env.HODEI_WORKER_MANAGER_URL!, (req, res, upRes) => {
      const send = () => (res.writeHead(upRes.statusCode ?? 502, upRes.headers), upRes.pipe(res));
      if (/since_seq=10000/.test(req.url ?? '')) void held.then(send);
      else send();
    });
    try {
      const logs = hodei(['logs', execution, '--raw'], { ...env, HODEI_WORKER_MANAGER_URL: proxy.url });
      await logs.waitFor(/^10000$/, 10_000);
      release();
      const r = await logs.done;
      expect(r.code, r.stderr).toBe(0);
      const lines = r.stdout.split('\n').slice(0, -1);
      expect([lines.length, lines[0], lines.at(-1)]).toEqual([12000, '1', '12000']);
    } finally {
      release();
      await proxy.close();
    }
    const json = await hodeiDone(['logs', execution, '--json'], env);
    const doc = JSON.parse(json.stdout) as { execution_id: string; lines: { seq: number }[] };
    expect([doc.execution_id, doc.lines.length, doc.lines.at(-1)!.seq]).toEqual([execution, 12000, 12000]);
    expect(json.stdout).toBe(`${JSON.stringify(doc, null, 2)}\n`);
    expect((await hodeiDone(['logs', execution, '--json', '--tail', '0'], env)).stdout).toBe(`${JSON.stringify({ execution_id: execution, lines: [] }, null, 2)}\n`);
  }, 60_000);

  it('workers list --status offers the statuses a worker can have', async () => {
    const r = await hodeiDone(['workers', 'list', '--status', 'online'], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("hodei: option '--status <status>' argument 'online' is invalid. Allowed choices are starting, running, draining, stopped, exited.\nrun 'hodei workers list --help' for usage\n");
  });
});

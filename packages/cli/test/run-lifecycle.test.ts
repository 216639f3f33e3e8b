// How `hodei run` ends: retries followed to the last attempt, a signal's end named in the summary,
// the job cancelled when hodei itself is killed or its reader goes away.
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { forwardingProxy, hodei, hodeiDone, lateAnswer, MAIN } from './helpers.js';
import { useStack } from './fixture.js';

const fx = useStack();
const { env, dir } = fx;

const executionOf = (stderr: string) => /^execution\s+([0-9a-f-]{36})$/m.exec(stderr)?.[1];

describe('hodei run: how it ends', () => {
  it('follows the retries of a failing job and exits with the last attempt\'s code', async () => {
    const marker = join(dir, 'second-attempt');
    const file = join(dir, 'flaky.yaml');
    await writeFile(file, `name: flaky\nretry_backoff_seconds: 1\ncommand: 'echo try; [ -f ${marker} ] && exit 0; touch ${marker}; exit 3'\n`);
    const r = await hodeiDone(['run', '-f', file, '--retries', '2', '--raw'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('try\ntry\n');
    expect(r.stderr).toMatch(/^attempt 1 failed \(exit 3\); retried as execution [0-9a-f-]{36} \(attempt 2 of 3\)$/m);
    expect(r.stderr).toMatch(/^attempt\s+2 of 3$/m);
    expect(r.stderr).toMatch(/^status\s+completed$/m);
    const res = await fetch(`${fx.stack.workerManager.url}/api/v1/executions/${executionOf(r.stderr)}`);
    expect(await res.json()).toMatchObject({ attempt: 2, status: 'completed' });

    const json = await hodeiDone(['run', '--json', '-f', file, '--retries', '1', '--command', 'echo no; exit 4'], env);
    expect(json.code).toBe(4);
    expect(JSON.parse(json.stdout)).toMatchObject({ attempt: 2, status: 'failed', exit_code: 4, line_count: 1 });
  }, 60_000);

  it('Ctrl-C while a retry waits out its back-off cancels the retry', async () => {
    const file = join(dir, 'slow-retry.yaml');
    await writeFile(file, 'name: slow-retry\nretry_backoff_seconds: 60\nmax_retries: 1\ncommand: exit 3\n');
    const run = hodei(['run', '-f', file], env);
    const note = await run.waitFor(/^attempt 1 failed .* retried as execution ([0-9a-f-]{36})/);
    run.child.kill('SIGINT');
    const r = await run.done;
    expect(r.code).toBe(130);
    const retry = /retried as execution ([0-9a-f-]{36})/.exec(note.text)![1];
    expect(executionOf(r.stderr)).toBe(retry);
    const res = await fetch(`${fx.stack.workerManager.url}/api/v1/executions/${retry}`);
    expect(await res.json()).toMatchObject({ status: 'cancelled' });
  }, 30_000);

  it('names the signal that killed the job and exits 128 + its number, as a shell does; no message that repeats the exit code', async () => {
    const r = await hodeiDone(['run', '--command', 'kill -TERM $$'], env);
    expect(r.code).toBe(143);
    expect(r.stderr).toMatch(/^exit code\s+signal SIGTERM \(exit 143\)$/m);
    const killed = await hodeiDone(['run', '--json', '--command', 'kill -KILL $$'], env);
    expect(killed.code).toBe(137);
    expect(JSON.parse(killed.stdout)).toMatchObject({ status: 'failed', exit_code: null, signal: 'SIGKILL' });
    // signals with two names (6 SIGABRT/SIGIOT, 29 SIGIO/SIGPOLL): the one kill -l and a core dump's note use
    const aborted = await hodeiDone(['run', '--command', 'kill -ABRT $$'], env);
    expect(aborted.code).toBe(134);
    expect(aborted.stderr).toMatch(/^exit code\s+signal SIGABRT \(exit 134\)$/m); // was SIGIOT
    const polled = await hodeiDone(['run', '--json', '--command', 'kill -IO $$'], env);
    expect(polled.code).toBe(157);
    expect(JSON.parse(polled.stdout)).toMatchObject({ signal: 'SIGIO' }); // was SIGPOLL
    const ok = await hodeiDone(['run', '--command', 'exit 0'], env);
    expect(ok.code).toBe(0);
    expect(ok.stderr).not.toMatch(/^message/m);
  });

  /** The latest execution of the job named `name`, once it has one. */
  async function latestExecution(name: string): Promise<string> {
    for (const started = Date.now(); Date.now() - started < 10_000; await new Promise((r) => setTimeout(r, 100))) {
      const jobs = (await (await fetch(`${fx.stack.orchestrator.url}/api/v1/jobs?name=${name}`)).json()) as { last_execution: { id: string } | null }[];
      const id = jobs[0]?.last_execution?.id;
      if (id) return id;
    }
    throw new Error(`job ${name} never ran`);
  }

  /** The execution's status once it is cancelled, or whatever it is after 15 s. */
  async function settled(id: string): Promise<string> {
    let status = '';
    for (const started = Date.now(); Date.now() - started < 15_000; await new Promise((r) => setTimeout(r, 100))) {
      status = ((await (await fetch(`${fx.stack.workerManager.url}/api/v1/executions/${id}`)).json()) as { status: string }).status;
      if (status === 'cancelled') break;
    }
    return status;
  }

  it('when the worker-manager stops answering once the job runs, says the execution may still run and how to follow it (exit 2)', async () => {
    // forwards to the worker-manager until the execution is started, then answers no more
    const gone = await forwardingProxy(fx.stack.workerManager.url, (req, res, upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
      if (req.url === '/api/v1/execute') res.on('finish', () => void gone.close());
    });
    const url = gone.url;
    const r = await hodeiDone(['run', '--name', 'unwatched', '--', 'sh', '-c', 'sleep 0.5; echo done'], { ...env, HODEI_WORKER_MANAGER_URL: url });
    expect(r.code).toBe(2);
    const id = await latestExecution('unwatched');
    // refused, or reset when the stream is asked for on a kept-alive connection the stand-in just closed
    expect(r.stderr).toMatch(new RegExp(`^hodei: cannot reach the worker-manager at ${url} \\(connection (refused|reset)\\); execution ${id} may still run: follow it with hodei logs -f ${id}\n$`));
    const logs = await hodeiDone(['logs', '-f', id, '--raw'], env);
    expect(logs.stdout).toBe('done\n');
    expect(logs.stderr).toMatch(/^── completed \(exit 0\)/);
  }, 30_000);

  /** Forwards to `target`; the answer to `path` comes 1 s late (a slow network). `asked` resolves once it is on its way. */
  it('Ctrl-C while the job is being created runs nothing, or cancels the execution once it is there (exit 130)', async () => {
    const slowExecute = await lateAnswer(fx.stack.workerManager.url, '/api/v1/execute');
    const slowCreate = await lateAnswer(fx.stack.orchestrator.url, '/api/v1/jobs');
    try {
      const run = hodei(['run', '--name', 'early-interrupt', '--', 'sh', '-c', 'sleep 20; echo never'], { ...env, HODEI_WORKER_MANAGER_URL: slowExecute.url });
      await slowExecute.asked;
      run.child.kill('SIGINT');
      const r = await run.done;
      expect(r.code, r.stderr).toBe(130);
      const id = await latestExecution('early-interrupt');
      expect(r.stderr).toContain(`cancelling execution ${id}… (Ctrl-C again to detach)\n`);
      expect(r.stderr).toMatch(/^status\s+cancelled$/m);
      expect(await settled(id)).toBe('cancelled');

      const never = hodei(['run', '--name', 'never-run', '--', 'echo', 'never'], { ...env, HODEI_ORCHESTRATOR_URL: slowCreate.url });
      await slowCreate.asked;
      never.child.kill('SIGINT');
      const n = await never.done;
      expect(n.code).toBe(130);
      expect(n.stderr).toBe('hodei: interrupted (the job was not run; removed)\n');
      expect(await (await fetch(`${fx.stack.orchestrator.url}/api/v1/jobs?name=never-run`)).json()).toEqual([]);
    } finally {
      await slowExecute.close();
      await slowCreate.close();
    }
  }, 30_000);

  it('SIGTERM or SIGHUP while the job is being created runs nothing, or cancels the execution once it is there (exit 143 / 129)', async () => {
    const slowExecute = await lateAnswer(fx.stack.workerManager.url, '/api/v1/execute');
    const slowCreate = await lateAnswer(fx.stack.orchestrator.url, '/api/v1/jobs');
    try {
      const run = hodei(['run', '--name', 'early-term', '--', 'sh', '-c', 'sleep 20; echo never'], { ...env, HODEI_WORKER_MANAGER_URL: slowExecute.url });
      await slowExecute.asked;
      run.child.kill('SIGTERM');
      const r = await run.done;
      expect({ code: r.code, signal: r.signal }, r.stderr).toEqual({ code: 143, signal: null });
      const id = await latestExecution('early-term');
      expect(r.stderr).toBe(`hodei got SIGTERM: cancelling execution ${id}\n`);
      expect(await settled(id)).toBe('cancelled');

      const never = hodei(['run', '--name', 'never-run-hup', '--', 'echo', 'never'], { ...env, HODEI_ORCHESTRATOR_URL: slowCreate.url });
      await slowCreate.asked;
      never.child.kill('SIGHUP');
      const n = await never.done;
      expect({ code: n.code, signal: n.signal }).toEqual({ code: 129, signal: null });
      expect(n.stderr).toBe('hodei: got SIGHUP (the job was not run; removed)\n');
      expect(await (await fetch(`${fx.stack.orchestrator.url}/api/v1/jobs?name=never-run-hup`)).json()).toEqual([]);
    } finally {
      await slowExecute.close();
      await slowCreate.close();
    }
  }, 30_000);

  it('SIGTERM (a CI step cancelled) cancels the execution, then exits 143', async () => {
    const run = hodei(['run', '--name', 'terminated', '--', 'sh', '-c', 'while :; do echo tick; sleep 0.1; done'], env);
    await run.waitFor(/\[OUT\] tick$/);
    run.child.kill('SIGTERM');
    const r = await run.done;
    expect(r.code).toBe(143);
    expect(r.stderr).toMatch(/^hodei got SIGTERM: cancelling execution [0-9a-f-]{36}$/m);
    expect(await settled(await latestExecution('terminated'))).toBe('cancelled');
  }, 30_000);

  it('SIGTERM whose cancel is answered after the execution ended: exit 143 with no summary begun (a rule line alone was seen)', async () => {
    const lateCancel = await forwardingProxy(fx.stack.workerManager.url, (req, res, upRes) => {
      setTimeout(() => (res.writeHead(upRes.statusCode ?? 502, upRes.headers), upRes.pipe(res)), /\/cancel$/.test(req.url ?? '') ? 1000 : 0);
    });
    try {
      const run = hodei(['run', '--name', 'term-at-end', '--', 'sh', '-c', 'echo up; sleep 20'], { ...env, HODEI_WORKER_MANAGER_URL: lateCancel.url });
      await run.waitFor(/\[OUT\] up$/);
      run.child.kill('SIGTERM');
      const r = await run.done;
      expect(r.code).toBe(143);
      expect(r.stderr).toBe(`hodei got SIGTERM: cancelling execution ${await latestExecution('term-at-end')}\n`);
    } finally {
      await lateCancel.close();
    }
  }, 30_000);

  it('SIGTERM exits 143 also when the cancel ends the execution at once (a retry waiting out its back-off)', async () => {
    const file = join(dir, 'terminated-retry.yaml');
    await writeFile(file, 'name: terminated-retry\nretry_backoff_seconds: 60\nmax_retries: 1\ncommand: exit 3\n');
    for (let i = 0; i < 3; i++) {
      const run = hodei(['run', '-f', file], env);
      await run.waitFor(/^attempt 1 failed/);
      run.child.kill('SIGTERM');
      const r = await run.done;
      expect(r.code, r.stderr).toBe(143);
    }
  }, 60_000);

  it('when the reader of its output goes away (| head), the execution is cancelled and hodei exits 141', async () => {
    const run = hodei(['run', '--raw', '--name', 'headed', '--', 'sh', '-c', 'i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done'], env);
    await run.waitFor(/^2$/);
    run.child.stdout!.destroy();
    const r = await run.done;
    expect(r.code).toBe(141);
    expect(await settled(await latestExecution('headed'))).toBe('cancelled');
  }, 30_000);

  it('when its output cannot be written (a full disk), says so, cancels the execution and exits 1; so do a list, --help and --version, not exit 0', async () => {
    const full = openSync('/dev/full', 'w');
    const toFullDisk = (args: string[]) =>
      new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [MAIN, ...args], { env: { PATH: process.env.PATH ?? '', NO_COLOR: '1', ...env }, stdio: ['ignore', full, 'pipe'] });
        let stderr = '';
        child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('close', (code, signal) => resolve({ code, signal, stderr }));
      });
    try {
      const run = await toFullDisk(['run', '--name', 'disk-full', '--', 'sh', '-c', 'echo a; sleep 30']);
      // the summary may follow, when the execution's end arrives before the cancel's answer
      expect({ code: run.code, signal: run.signal, first: run.stderr.split('\n')[0] }).toEqual({ code: 1, signal: null, first: 'hodei: cannot write to stdout: no space left on device' });
      expect(await settled(await latestExecution('disk-full'))).toBe('cancelled');
      const list = await toFullDisk(['jobs', 'list']);
      expect([list.code, list.stderr]).toEqual([1, 'hodei: cannot write to stdout: no space left on device\n']);
      for (const args of [['--version'], ['run', '--help']]) {
        const r = await toFullDisk(args);
        expect([r.code, r.stderr], args.join(' ')).toEqual([1, 'hodei: cannot write to stdout: no space left on device\n']);
      }
    } finally {
      closeSync(full);
    }
  }, 30_000);

  it('a Ctrl-C once the job is over, while its summary is written to a slow reader, changes nothing: the whole summary, the job\'s exit code', async () => {
    const run = hodei(['run', '--json', '--name', 'finished', '--', 'sh', '-c', 'seq 1 20000; exit 3'], env);
    const stdout = run.child.stdout!;
    stdout.pause(); // a reader that does not keep up: hodei writes its 2 MB summary into a full pipe
    const deadline = Date.now() + 20_000;
    while (stdout.readableLength === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(stdout.readableLength).toBeGreaterThan(0);
    run.child.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 200));
    stdout.resume();
    const r = await run.done;
    expect({ code: r.code, signal: r.signal }).toEqual({ code: 3, signal: null });
    const summary = JSON.parse(r.stdout) as { status: string; exit_code: number; lines: unknown[] };
    expect([summary.status, summary.exit_code, summary.lines.length]).toEqual(['failed', 3, 20000]);
  }, 30_000);

  it('a second Ctrl-C detaches at once and the cancel asked for still ends the execution', async () => {
    const run = hodei(['run', '--name', 'stubborn', '--', 'sh', '-c', 'trap "" TERM; while :; do echo tick; sleep 0.1; done'], env);
    await run.waitFor(/\[OUT\] tick$/);
    run.child.kill('SIGINT');
    await run.waitFor(/^cancelling execution/);
    run.child.kill('SIGINT');
    const r = await run.done;
    expect(r.code).toBe(130);
    const id = await latestExecution('stubborn');
    expect(r.stderr).toContain(`detached; the cancel of execution ${id} goes on without hodei: hodei logs -f ${id}\n`);
    expect(await settled(id)).toBe('cancelled');
  }, 30_000);
});

describe('hodei run --script: what is not a script', () => {
  it('a directory, a missing file, a binary file, an empty one and one over 1 MiB are each named, exit 1, nothing created', async () => {
    const jobCount = async () => (await fetch(`${fx.stack.orchestrator.url}/api/v1/jobs?limit=1`)).headers.get('x-total-count');
    const before = await jobCount();
    const binary = join(dir, 'program.bin');
    await writeFile(binary, Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00, 0x00]));
    const cases: [string, string][] = [
      [dir, `hodei: cannot read ${dir}: it is a directory\n`],
      [join(dir, 'nope.sh'), `hodei: cannot read ${join(dir, 'nope.sh')}: no such file\n`],
      [binary, `hodei: ${binary} is a binary file, not a script or a job file (it holds a NUL byte)\n`],
    ];
    const huge = join(dir, 'huge.sh');
    await writeFile(huge, `#!/bin/sh\n${'#'.repeat(1_100_000)}\n`);
    cases.push([huge, `hodei: ${huge} holds 1100011 characters; a script may hold up to 1048576 (1 MiB): run a larger one from a file on the worker\n`]);
    const empty = join(dir, 'empty.sh');
    await writeFile(empty, '');
    cases.push([empty, `hodei: ${empty} is empty: nothing to run\n`]);
    for (const [file, message] of cases) {
      const r = await hodeiDone(['run', '--script', file], env);
      expect(r.code, file).toBe(1);
      expect(r.stderr).toBe(message);
    }
    const noCommand = await hodeiDone(['run', '--command', ''], env);
    expect([noCommand.code, noCommand.stderr]).toEqual([2, "hodei: --command is empty: nothing to run\nrun 'hodei run --help' for usage\n"]);
    expect(await jobCount()).toBe(before);
  });

  it('--command and --script together are refused, not one of them run in silence', async () => {
    const script = join(dir, 'both.sh');
    await writeFile(script, 'echo from the script\n');
    const jobs = async () => (await fetch(`${fx.stack.orchestrator.url}/api/v1/jobs?name=both`).then((r) => r.json())) as unknown[];
    const r = await hodeiDone(['run', '--name', 'both', '--command', 'echo from the command', '--script', script], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("hodei: give --command or --script, not both\nrun 'hodei run --help' for usage\n");
    expect(r.stdout).toBe('');
    expect(await jobs()).toEqual([]);
  });
});

// The spawners on their own: the same behaviour from the compiled spawner process, the perl one, a
// thread, the main thread.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { createLogger } from '@hodei/platform';
import { executionTree, signalPids } from '../src/procs.js';
import { commandRequest, createSpawner, InlineSpawner, NATIVE_SPAWNER, perlSpawner, ProcessSpawner, ThreadSpawner, type JobHandle, type Spawner } from '../src/spawn.js';

const logger = createLogger('test', 'silent');
const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

async function collect(job: JobHandle) {
  const out = { stdout: '', stderr: '' };
  job.onData((stream, chunk) => (out[stream] += chunk.toString()));
  const exit = await job.exited;
  await job.closed;
  job.destroy();
  return { exit, out };
}

for (const [name, make] of [
  ['inline', () => new InlineSpawner()],
  ['thread', () => new ThreadSpawner(logger)],
  ['compiled', () => new ProcessSpawner(logger, [NATIVE_SPAWNER])],
  ['perl', () => new ProcessSpawner(logger, perlSpawner())],
] as Array<[string, () => Spawner]>) {
  describe(`${name} spawner`, () => {
    it('runs a process in its own group and relays both streams and the exit code', async () => {
      const s = make();
      const job = await s.spawn(commandRequest('echo "$1"; echo err >&2; ps -o pgid= -p $$; exit 4', ['arg'], env, undefined));
      const { exit, out } = await collect(job);
      expect(exit).toMatchObject({ code: 4, signal: null });
      expect(out.stdout.split('\n')[0]).toBe('arg');
      expect(Number(out.stdout.split('\n')[1])).toBe(job.pid); // process group id = its own pid
      expect(out.stderr).toBe('err\n');
      await s.close();
    });

    it('relays a large output byte for byte', async () => {
      const s = make();
      const job = await s.spawn(commandRequest('seq 1 200000', [], env, undefined));
      const { out } = await collect(job);
      expect(out.stdout).toBe(Array.from({ length: 200_000 }, (_, i) => i + 1).join('\n') + '\n');
      await s.close();
    });

    it('rejects with the OS error code when the process cannot start', async () => {
      const s = make();
      await expect(s.spawn(commandRequest('true', [], env, '/nonexistent/dir'))).rejects.toMatchObject({ code: 'ENOENT' });
      await expect(s.spawn({ file: '/nonexistent/interpreter', args: [], env, cwd: undefined })).rejects.toMatchObject({ code: 'ENOENT' });
      await s.close();
    });

    it('reports the signal that ended a process, and sets its working directory and environment', async () => {
      const s = make();
      const killed = await s.spawn(commandRequest('kill -TERM $$', [], env, undefined));
      expect((await collect(killed)).exit).toMatchObject({ code: null, signal: 'SIGTERM' });
      const job = await s.spawn(commandRequest('pwd; echo "$ONLY_THIS"; env | grep -c . ; cat', [], { ...env, ONLY_THIS: 'a=b c' }, '/tmp'));
      const { exit, out } = await collect(job);
      expect(exit.code).toBe(0);
      // stdin is closed (cat ends at once); the environment is exactly the one asked for (+ PWD from sh)
      expect(out.stdout.split('\n').slice(0, 2)).toEqual(['/tmp', 'a=b c']);
      expect(Number(out.stdout.split('\n')[2])).toBeLessThanOrEqual(4);
      await s.close();
    });

    it('holds output back while paused and delivers it all on resume', async () => {
      const s = make();
      const job = await s.spawn(commandRequest('seq 1 3000000', [], env, undefined));
      job.pause();
      let bytes = 0;
      let exited = false;
      job.onData((_, chunk) => (bytes += chunk.length));
      void job.exited.then(() => (exited = true));
      // what was read before the pause took effect still arrives (late on a loaded machine): once
      // it stops, nothing more comes, and the job waits
      let during = -1;
      for (const until = Date.now() + 10_000; bytes !== during && Date.now() < until; await new Promise((r) => setTimeout(r, 150))) during = bytes;
      await new Promise((r) => setTimeout(r, 300));
      expect(bytes).toBe(during);
      expect(bytes).toBeLessThan(22_888_896);
      expect(exited).toBe(false);
      job.resume();
      await job.exited;
      await job.closed;
      expect(bytes).toBe(22_888_896); // every byte of `seq 1 3000000`
      await s.close();
    });
  });
}

const SPAWNER_PROCESSES = [
  ['compiled', [NATIVE_SPAWNER]],
  ['perl', perlSpawner()],
] as const;

describe('process spawner', () => {
  it('is built, and createSpawner starts it first', async () => {
    expect(existsSync(NATIVE_SPAWNER)).toBe(true); // the build found a C compiler (this machine has one)
    const s = await createSpawner('process', logger);
    expect(readFileSync(`/proc/${s.subreaper}/cmdline`, 'latin1').split('\0')[0]).toBe(NATIVE_SPAWNER);
    await s.close();
  });

  it('relays output that keeps coming at most once a millisecond, and a line after a quiet spell at once', async () => {
    const s = new ProcessSpawner(logger, [NATIVE_SPAWNER]);
    // 300 lines about 0.2 ms apart, then one more after 300 ms
    const job = await s.spawn(
      commandRequest(`perl -MTime::HiRes=usleep -e '$|=1; for (1..300) { print "$_\\n"; usleep 200 } usleep 300000; print "late\\n"'`, [], env, undefined),
    );
    const arrivals: Array<{ at: number; text: string }> = [];
    let sameTurn = false;
    job.onData((_stream, chunk) => {
      // the records of one read of the spawner's pipe come in the same turn: one arrival
      if (!sameTurn) arrivals.push({ at: performance.now(), text: '' });
      arrivals.at(-1)!.text += chunk.toString();
      sameTurn = true;
      queueMicrotask(() => (sameTurn = false));
    });
    await job.exited;
    await job.closed;
    job.destroy();
    expect(arrivals.map((a) => a.text).join('')).toBe(Array.from({ length: 300 }, (_, i) => `${i + 1}\n`).join('') + 'late\n');
    const [late, ...rest] = [arrivals.at(-1)!, ...arrivals.slice(0, -1)];
    expect(late.text).toBe('late\n');
    // one relay per line (300) before; at most one per millisecond they took now (generous margin)
    const tookMs = rest.at(-1)!.at - rest[0]!.at;
    expect(rest.length).toBeLessThanOrEqual(tookMs + 5);
    await s.close();
  });

  it('falls back to spawner.pl when the compiled one cannot run, and to a thread without perl', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hodei-spawner-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const broken = join(dir, 'spawner');
    writeFileSync(broken, 'not a program', { mode: 0o755 });
    const s = new ProcessSpawner(logger, [broken]);
    await expect(s.ready).rejects.toThrow(/the spawner process exited/); // sh tried it as a script
    const job = await s.spawn(commandRequest('echo inline', [], env, undefined));
    expect((await collect(job)).out.stdout).toBe('inline\n');
    const perl = await createSpawner('process', logger, { native: broken });
    expect(readFileSync(`/proc/${perl.subreaper}/cmdline`, 'latin1')).toContain('spawner.pl');
    await perl.close();
    const thread = await createSpawner('process', logger, { native: broken, perl: '/nonexistent/perl' });
    expect(thread).toBeInstanceOf(ThreadSpawner);
    await thread.close();
    const forced = await createSpawner('perl', logger, { perl: '/nonexistent/perl' });
    expect(forced).toBeInstanceOf(ThreadSpawner);
    await forced.close();
  });

  for (const [name, command] of SPAWNER_PROCESSES) {
    it(`refuses a spawn with EMFILE when out of descriptors, and leaks none (${name})`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'hodei-spawner-'));
      onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
      const limited = join(dir, 'limited');
      writeFileSync(limited, '#!/bin/sh\nulimit -n 24\nexec "$@"\n', { mode: 0o755 });
      const s = new ProcessSpawner(logger, [limited, ...command]);
      await s.ready;
      const fill = async () => {
        const jobs: JobHandle[] = [];
        for (;;) {
          try {
            jobs.push(await s.spawn(commandRequest('sleep 0.3', [], env, undefined)));
          } catch (err) {
            expect((err as NodeJS.ErrnoException).code).toBe('EMFILE');
            break;
          }
          expect(jobs.length).toBeLessThan(24);
        }
        await Promise.all(jobs.map((j) => collect(j)));
        return jobs.length;
      };
      const first = await fill();
      expect(first).toBeGreaterThan(0);
      expect(await fill()).toBe(first); // the refused spawns left no descriptor behind
      await s.close();
    });

    it(`relays what a job wrote before its exit, even when it is reaped before its pipes are read (${name})`, async () => {
      const s = new ProcessSpawner(logger, [...command]);
      await s.ready;
      // 30 spawns in one request batch: the first have exited before the spawner looks at their pipes
      const jobs = await Promise.all(Array.from({ length: 30 }, (_, i) => s.spawn(commandRequest(`echo ${i}`, [], env, undefined))));
      const atExit = await Promise.all(
        jobs.map(async (job) => {
          let out = '';
          job.onData((_, chunk) => (out += chunk.toString()));
          await job.exited;
          return out;
        }),
      );
      expect(atExit).toEqual(jobs.map((_, i) => `${i}\n`));
      await s.close();
    });

    it(`says whether a job left processes behind, and reaps them once they end (${name})`, async () => {
      const s = new ProcessSpawner(logger, [...command]);
      await s.ready;
      expect((await collect(await s.spawn(commandRequest('true', [], env, undefined)))).exit.alone).toBe(true);
      // the orphan holds the pipes open: read the line, do not wait for the end of file
      const messy = await s.spawn(commandRequest('setsid sleep 30 >/dev/null 2>&1 & echo $! $PPID', [], env, undefined));
      let out = '';
      messy.onData((_, chunk) => (out += chunk.toString()));
      expect((await messy.exited).alone).toBe(false);
      await messy.closed;
      const [orphan, spawnerPid] = out.trim().split(' ').map(Number);
      // the orphan is the spawner's child now (it is a child subreaper), not init's
      expect(readFileSync(`/proc/${orphan}/stat`, 'latin1').split(') ')[1]!.split(' ')[1]).toBe(String(spawnerPid));
      process.kill(orphan!, 'SIGKILL');
      const deadline = Date.now() + 2000;
      while (existsSync(`/proc/${orphan}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(existsSync(`/proc/${orphan}`)).toBe(false); // reaped, not left a zombie
      expect((await collect(await s.spawn(commandRequest('true', [], env, undefined)))).exit.alone).toBe(true);
      await s.close();
    });

    it(`finds an execution's processes by parentage: setsid children under the job, double-forked orphans under the spawner (${name})`, async () => {
      const s = new ProcessSpawner(logger, [...command]);
      await s.ready;
      const id = 'tree-test';
      const dir = mkdtempSync(join(tmpdir(), 'hodei-tree-'));
      onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
      const other = await s.spawn(commandRequest('sleep 30', [], { ...env, HODEI_EXECUTION_ID: 'another' }, undefined));
      const job = await s.spawn(
        commandRequest(
          'setsid sleep 30 >/dev/null 2>&1 & s=$!; (sleep 30 >/dev/null 2>&1 & echo $! > "$1") ; until [ -s "$1" ]; do :; done; echo "$s $(cat "$1")"; exec sleep 30',
          [join(dir, 'pid')],
          { ...env, HODEI_EXECUTION_ID: id },
          undefined,
        ),
      );
      let out = '';
      job.onData((_, chunk) => (out += chunk.toString()));
      const deadline = Date.now() + 5000;
      while (!out.includes('\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      const [setsidChild, orphan] = out.trim().split(' ').map(Number);
      expect(readFileSync(`/proc/${orphan}/stat`, 'latin1').split(') ')[1]!.split(' ')[1]).toBe(String(s.subreaper));
      const tree = executionTree(id, job.pid, s.subreaper);
      expect(tree.sort()).toEqual([job.pid, setsidChild!, orphan!].sort());
      // without the subreaper, only what is still under the job
      expect(executionTree(id, job.pid, undefined).sort()).toEqual([job.pid, setsidChild!].sort());
      signalPids([...tree, other.pid], 'SIGKILL');
      expect((await job.exited).signal).toBe('SIGKILL');
      await other.exited;
      await s.close();
    });

    it(`ends what it watched when the process dies, then spawns from the agent (${name})`, async () => {
      const s = new ProcessSpawner(logger, [...command]);
      await s.ready;
      const job = await s.spawn(commandRequest('echo $PPID; sleep 5', [], env, undefined));
      let out = '';
      job.onData((_, chunk) => (out += chunk.toString()));
      while (!out.includes('\n')) await new Promise((r) => setTimeout(r, 10));
      process.kill(Number(out), 'SIGKILL'); // the job's parent: the spawner process
      expect((await job.exited).error).toMatch(/spawner process/);
      process.kill(-job.pid, 'SIGKILL');
      const after = await s.spawn(commandRequest('echo after', [], env, undefined));
      expect((await collect(after)).out.stdout).toBe('after\n');
    });
  }
});

describe('thread spawner', () => {
  it('spawns on the main thread once its thread is gone', async () => {
    const s = new ThreadSpawner(logger);
    await s.close();
    const job = await s.spawn(commandRequest('echo still', [], env, undefined));
    const { exit, out } = await collect(job);
    expect(exit.code).toBe(0);
    expect(out.stdout).toBe('still\n');
  });

  it('ends what it watched when its thread dies, instead of hanging', async () => {
    const s = new ThreadSpawner(logger);
    const job = await s.spawn(commandRequest('sleep 5', [], env, undefined));
    await s.close();
    const exit = await job.exited;
    expect(exit.error).toMatch(/spawner thread/);
    process.kill(-job.pid, 'SIGKILL');
  });
});

import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readResultParts } from '@hodei/platform';
import { setup, text } from './harness.js';

let h: Awaited<ReturnType<typeof setup>>;
beforeAll(async () => {
  h = await setup();
});
afterAll(async () => {
  await h.teardown();
});

describe('running a job', () => {
  it('reports completed with exit code 0 and started_at; over before `running` is due, it reports only that', async () => {
    const patient = await h.start({ runningAfterMs: 5000 });
    const run = await h.assign({ command: 'echo hello' }, { to: patient });
    expect(run.ack).toEqual({ accepted: true });
    const final = await run.final;
    expect(final).toMatchObject({ status: 'completed', exit_code: 0, signal: null, last_seq: 1, worker_id: patient.id });
    expect(run.statuses.map((s) => s.status)).toEqual(['completed']);
    expect(final.started_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(final.finished_at! >= final.started_at!).toBe(true);
    expect(final.duration_ms).toBeGreaterThanOrEqual(0);
    expect(text(run.lines)).toEqual(['hello']);
    expect(final.result).toBeUndefined();
    expect(final.result_error).toBeUndefined();
  });

  it('reports running (with started_at) once the job has run for HODEI_WORKER_RUNNING_AFTER_MS', async () => {
    const run = await h.assign({ command: 'sleep 0.3; echo done' });
    const final = await run.final;
    expect(run.statuses.map((s) => s.status)).toEqual(['running', 'completed']);
    expect(run.statuses[0]).toMatchObject({ worker_id: h.worker.id, started_at: final.started_at });
  });

  it('reports failed with exit code 3', async () => {
    const run = await h.assign({ command: 'echo about to fail; exit 3' });
    const final = await run.final;
    expect(final).toMatchObject({ status: 'failed', exit_code: 3, last_seq: 1, message: 'exited with code 3' });
  });

  it('numbers stdout and stderr lines together in the order written', async () => {
    const run = await h.assign({ command: 'echo a; sleep 0.05; echo b >&2; sleep 0.05; echo c; sleep 0.05; printf "d\\r\\ne" >&2' });
    await run.final;
    expect(run.lines.map((l) => [l.seq, l.stream, l.line])).toEqual([
      [1, 'stdout', 'a'],
      [2, 'stderr', 'b'],
      [3, 'stdout', 'c'],
      [4, 'stderr', 'd'],
      [5, 'stderr', 'e'],
    ]);
    for (const l of run.lines) expect(l.timestamp).toMatch(/\.\d{3}Z$/);
  });

  it('passes args to a command as $1..', async () => {
    const run = await h.assign({ command: 'echo "$0:$1:$2"', args: ['one', 'two words'] });
    await run.final;
    expect(text(run.lines)).toEqual(['sh:one:two words']);
  });

  it('runs a script by its bash shebang (bash-only syntax) and removes the file after', async () => {
    const script = '#!/usr/bin/env bash\nset -euo pipefail\ndeclare -A m=([k]=v)\narr=(x y z)\necho "${m[k]} ${#arr[@]} ${BASH_VERSION%%.*}" "$1"\necho "$0"\n';
    const run = await h.assign({ script, args: ['arg1'] });
    const final = await run.final;
    expect(final.status).toBe('completed');
    const [first, scriptPath] = text(run.lines);
    expect(first).toMatch(/^v 3 \d+ arg1$/);
    expect(path.basename(scriptPath!)).toBe('script');
    const { existsSync } = await import('node:fs');
    expect(existsSync(scriptPath!)).toBe(false);
  });

  it('runs a script without a shebang through /bin/sh', async () => {
    const run = await h.assign({ script: 'echo from sh; exit 7' });
    const final = await run.final;
    expect(final).toMatchObject({ status: 'failed', exit_code: 7 });
    expect(text(run.lines)).toEqual(['from sh']);
  });

  it('gives the job its env, the HODEI_* variables and working_dir, but never the API token', async () => {
    const dir = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'hodei-wd-')));
    try {
      const w = await h.start({ baseEnv: { PATH: process.env.PATH ?? '/usr/bin:/bin', HODEI_API_TOKEN_X: 'fine', KEEP: 'base' } });
      const run = await h.assign(
        {
          command: 'pwd; echo "$GREETING|$KEEP|$HODEI_EXECUTION_ID|$HODEI_JOB_ID|$TRACEPARENT|${HODEI_API_TOKEN:-none}"; test -n "$HODEI_RESULT_FILE" && echo has-result-file',
          env: { GREETING: 'hi there', KEEP: 'job wins' },
          working_dir: dir,
        },
        { to: w, traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', jobId: '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11' },
      );
      await run.final;
      expect(text(run.lines)).toEqual([
        dir,
        `hi there|job wins|${run.id}|01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11|00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01|none`,
        'has-result-file',
      ]);
      await w.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('gives a run without a trace no TRACEPARENT: neither the agent\'s own nor one in a job stored before the name was refused', async () => {
    const w = await h.start({ baseEnv: { PATH: process.env.PATH ?? '/usr/bin:/bin', TRACEPARENT: '00-11111111111111111111111111111111-2222222222222222-01' } });
    const run = await h.assign({ command: 'echo "tp=${TRACEPARENT:-none}"', env: { TRACEPARENT: '00-33333333333333333333333333333333-4444444444444444-01' } }, { to: w });
    expect(await run.final).toMatchObject({ status: 'completed' });
    expect(text(run.lines)).toEqual(['tp=none']);
    await w.stop();
  });

  it('reports an execution without a job on its own status subject, without HODEI_JOB_ID', async () => {
    const run = await h.assign({ command: 'echo "job=${HODEI_JOB_ID:-none}"' }, { jobId: null });
    expect(await run.final).toMatchObject({ status: 'completed', job_id: null });
    expect(text(run.lines)).toEqual(['job=none']);
  });

  it('strips HODEI_API_TOKEN from the environment read at start', async () => {
    const w = await h.start({ env: { HODEI_API_TOKEN: 'secret-token', PATH: process.env.PATH } });
    const run = await h.assign({ command: 'env' }, { to: w });
    await run.final;
    expect(text(run.lines).some((l) => l.includes('secret-token'))).toBe(false);
    expect(text(run.lines)).toContain(`HODEI_EXECUTION_ID=${run.id}`);
    await w.stop();
  });

  it('closes stdin', async () => {
    const run = await h.assign({ command: 'cat; echo "cat exited $?"' });
    const final = await run.final;
    expect(final.status).toBe('completed');
    expect(text(run.lines)).toEqual(['cat exited 0']);
  });

  it('reports the JSON written to $HODEI_RESULT_FILE', async () => {
    const run = await h.assign({ command: `printf '{"rows": 42, "ok": true, "names": ["a"]}' > "$HODEI_RESULT_FILE"` });
    const final = await run.final;
    expect(final.result).toEqual({ rows: 42, ok: true, names: ['a'] });
    expect(final.result_error).toBeUndefined();
  });

  it('reports an invalid result file as result_error, never as a result', async () => {
    const run = await h.assign({ command: `echo '{"rows": 4' > "$HODEI_RESULT_FILE"; exit 0` });
    const final = await run.final;
    expect(final.status).toBe('completed');
    expect(final.result).toBeUndefined();
    expect(final.result_error).toMatch(/^result file is not valid JSON: /);
  });

  it('takes a result that starts with a byte-order mark, and reports one that is not UTF-8', async () => {
    const bom = await h.assign({ command: `printf '\\357\\273\\277{"ok": true}' > "$HODEI_RESULT_FILE"` });
    const withBom = await bom.final;
    expect(withBom.result).toEqual({ ok: true });
    expect(withBom.result_error).toBeUndefined();
    const latin1 = await h.assign({ command: `printf '{"city": "M\\341laga"}' > "$HODEI_RESULT_FILE"` });
    const notUtf8 = await latin1.final;
    expect(notUtf8.status).toBe('completed');
    expect(notUtf8.result).toBeUndefined();
    expect(notUtf8.result_error).toBe('result file is not valid JSON: it is not UTF-8 text');
  });

  it('rejects a result file over 1 MiB', async () => {
    const run = await h.assign({ command: `head -c 1100000 /dev/zero | tr '\\0' 1 > "$HODEI_RESULT_FILE"` });
    const final = await run.final;
    expect(final.result).toBeUndefined();
    expect(final.result_error).toMatch(/larger than 1 MiB/);
  });

  it('follows no symbolic link and waits for no FIFO: result_error, and the execution ends', async () => {
    const link = await h.assign({ command: `t="$HODEI_RESULT_FILE.target"; printf '{"secret": 1}' > "$t"; ln -s "$t" "$HODEI_RESULT_FILE"; echo "$t"` });
    const linked = await link.final;
    expect(existsSync(link.lines[0]!.line)).toBe(false); // gone with the execution's folder
    expect(linked.status).toBe('completed');
    expect(linked.result).toBeUndefined();
    expect(linked.result_error).toBe('result file is a symbolic link: write the JSON to the file itself');
    const fifo = await h.assign({ command: 'mkfifo "$HODEI_RESULT_FILE"' });
    const piped = await fifo.final;
    expect(piped.status).toBe('completed');
    expect(piped.result_error).toBe('result file is not a regular file');
    const dir = await h.assign({ command: 'mkdir "$HODEI_RESULT_FILE"; echo "$HODEI_RESULT_FILE"' });
    expect((await dir.final).result_error).toBe('result file is not a regular file');
    expect(existsSync(dir.lines[0]!.line)).toBe(false);
  });

  it('reports a result nested deeper than 1000 levels as result_error, and the execution ends', async () => {
    const nested = (n: number) => `awk 'BEGIN { for (i = 0; i < ${n}; i++) printf "["; for (i = 0; i < ${n}; i++) printf "]" }' > "$HODEI_RESULT_FILE"`;
    const deep = await (await h.assign({ command: nested(100_000) })).final;
    expect(deep).toMatchObject({ status: 'completed', exit_code: 0, result_error: 'result is nested deeper than 1000 levels' });
    expect(deep.result).toBeUndefined();
    const limit = await (await h.assign({ command: nested(1000) })).final;
    expect(limit.result_error).toBeUndefined();
    expect(JSON.stringify(limit.result)).toBe('['.repeat(1000) + ']'.repeat(1000));
  });

  it('reports a result of almost 1 MiB intact', async () => {
    const run = await h.assign({ command: `{ printf '"'; head -c 1000000 /dev/zero | tr '\\0' a; printf '"'; } > "$HODEI_RESULT_FILE"` });
    const final = await run.final;
    expect(final.status).toBe('completed');
    expect(final.result_error).toBeUndefined();
    expect(final.result).toBe('a'.repeat(1_000_000));
  });

  it('sends a result of 1 MiB, too large for one message with its status, ahead of it in parts', async () => {
    // a JSON string of 1,048,576 bytes with escapes and 2-byte characters: each `é\\\"` is 6 bytes
    // in the file and 3 characters in the result; with the default max_payload (1 MiB) it goes in
    // 3 parts, and both cuts fall inside an `é`
    const script = String.raw`#!/bin/sh
{ printf '"abcd'; yes 'é\\\"' | head -n 174761 | tr -d '\n'; printf 'wxyz"'; } > "$HODEI_RESULT_FILE"
wc -c < "$HODEI_RESULT_FILE"`;
    const run = await h.assign({ script });
    const final = await run.final;
    expect(final).toMatchObject({ status: 'completed', exit_code: 0 });
    expect(final.result).toBeUndefined();
    expect(final.result_error).toBeUndefined();
    expect(final.result_parts).toBeGreaterThan(1);
    const back = await readResultParts(h.bus.jsm, h.bus.subjects, run.id, final.result_parts!);
    expect(back.result_error).toBeUndefined();
    expect(text(run.lines)).toEqual(['1048576']);
    expect(back.result).toBe(`abcd${'é\\"'.repeat(174_761)}wxyz`);
  });

  it('fails with a clear message when working_dir does not exist', async () => {
    const run = await h.assign({ command: 'echo never', working_dir: '/nonexistent/hodei-dir' });
    const final = await run.final;
    expect(final).toMatchObject({ status: 'failed', exit_code: null, last_seq: 1 });
    expect(final.message).toBe('working directory does not exist: /nonexistent/hodei-dir');
    expect(run.lines).toEqual([expect.objectContaining({ seq: 1, stream: 'stderr', line: 'hodei: working directory does not exist: /nonexistent/hodei-dir' })]);
  });

  it('fails with a clear message when the shebang interpreter is missing', async () => {
    const run = await h.assign({ script: '#!/nonexistent/interpreter\necho hi\n' });
    const final = await run.final;
    expect(final.status).toBe('failed');
    expect(final.message).toContain('#!/nonexistent/interpreter');
    expect(run.lines[0]).toMatchObject({ stream: 'stderr' });
  });

  it('says so when a script fails to start because of Windows line endings', async () => {
    const run = await h.assign({ script: '#!/bin/sh\r\necho hi\r\n' });
    const final = await run.final;
    expect(final.status).toBe('failed');
    expect(final.message).toBe('cannot run the script: it has Windows line endings (CRLF), so its first line asks for "/bin/sh\\r"; convert it to LF (dos2unix)');
    const viaEnv = await (await h.assign({ script: '#!/usr/bin/env sh\r\necho hi\r\n' })).final;
    expect(viaEnv).toMatchObject({ status: 'failed', exit_code: null });
    expect(viaEnv.message).toBe('cannot run the script: it has Windows line endings (CRLF), so its first line asks for "/usr/bin/env sh\\r"; convert it to LF (dos2unix)');
  });

  it('says so when a script starts with a #! line that names no interpreter', async () => {
    for (const first of ['#!', '#!   ']) {
      const run = await h.assign({ script: `${first}\necho hi\n` });
      const final = await run.final;
      const message = 'cannot run the script: its first line "#!" names no interpreter; write the interpreter\'s path after #! (#!/bin/sh), or leave the line out to run the script with /bin/sh';
      expect(final).toMatchObject({ status: 'failed', exit_code: null, message });
      expect(text(run.lines)).toEqual([`hodei: ${message}`]);
    }
  });

  it.skipIf((process.env.TEST_WORKER_SPAWNER ?? 'process') !== 'process')('says so when a script names an interpreter the system cannot run (a text file without #!)', async () => {
    // (Node's spawn, under the thread and inline spawners, runs such a script with /bin/sh instead, as execvp does)
    const dir = mkdtempSync(path.join(os.tmpdir(), 'hodei-noexec-'));
    try {
      const interpreter = path.join(dir, 'interp');
      writeFileSync(interpreter, 'echo not a program\n', { mode: 0o755 });
      const final = await (await h.assign({ script: `#!${interpreter}\necho hi\n` })).final;
      expect(final).toMatchObject({ status: 'failed', exit_code: null });
      expect(final.message).toBe(`cannot run the script: its interpreter (#!${interpreter}) is not a program the system can run (ENOEXEC): name a binary, or a script that starts with #! itself`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // mounting a noexec tmpfs needs root (as in CI's container)
  it.skipIf(process.getuid?.() !== 0)('says the temp dir forbids running programs (mounted noexec), not that the interpreter is missing', async () => {
    const tmpDir = mkdtempSync(path.join(os.tmpdir(), 'hodei-noexec-mount-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'noexec,size=1m', 'tmpfs', tmpDir]);
    try {
      const w = await h.start({ tmpDir });
      const final = await (await h.assign({ script: '#!/bin/sh\necho hi\n' }, { to: w })).final;
      expect(final).toMatchObject({
        status: 'failed',
        message: `cannot run the script: the system refuses to run programs from ${tmpDir} (EACCES: is it mounted noexec?); give the worker HODEI_WORKER_TMPDIR where programs may run`,
      });
      expect((await (await h.assign({ script: 'echo without a shebang' }, { to: w })).final).status).toBe('completed');
      await w.stop();
    } finally {
      execFileSync('umount', [tmpDir]);
      rmSync(tmpDir, { recursive: true, force: true });
    }
  });

  it('fails cleanly on an argument the OS cannot take (NUL byte)', async () => {
    const run = await h.assign({ command: 'echo "$1"', args: ['a\u0000b'] });
    const final = await run.final;
    expect(final.status).toBe('failed');
    expect(final.message).toMatch(/^cannot start the process: /);
    expect(run.lines[0]).toMatchObject({ stream: 'stderr' });
  });

  it('fails cleanly when its temp folder cannot be made', async () => {
    const w = await h.start({ tmpDir: '/nonexistent/hodei-tmp' });
    const run = await h.assign({ script: 'echo hi' }, { to: w });
    const final = await run.final;
    expect(final.status).toBe('failed');
    expect(final.message).toMatch(/^cannot create the execution's folder in \/nonexistent\/hodei-tmp: ENOENT/);
    await w.stop();
  });

  it("keeps the result file and the script in a folder only the worker's user can enter, removed after", async () => {
    const run = await h.assign({ script: 'echo \'{"token":"s3cret"}\' > "$HODEI_RESULT_FILE"\nd=$(dirname "$HODEI_RESULT_FILE")\necho "$d"\nstat -c %a "$d"\n[ "$(dirname "$0")" = "$d" ] && echo same' });
    const final = await run.final;
    expect(final).toMatchObject({ status: 'completed', result: { token: 's3cret' } });
    const [dir, mode, same] = text(run.lines);
    // the job's umask made the file 644: in the temp dir itself (1777) any user could read it
    expect(mode).toBe('700');
    expect(same).toBe('same');
    expect(existsSync(dir!)).toBe(false);
    // a command that wrote nothing leaves it empty: removed as well
    const quiet = await h.assign({ command: 'dirname "$HODEI_RESULT_FILE"' });
    expect((await quiet.final).status).toBe('completed');
    const [empty] = text(quiet.lines);
    expect(empty).toMatch(/hodei-/);
    expect(existsSync(empty!)).toBe(false);
  });

  it('writes the script to a file of its own, never through a link or file someone put at its name', async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'hodei-scripttmp-'));
    const w = await h.start({ tmpDir: tmp });
    const id = randomUUID();
    const victim = path.join(tmp, 'victim');
    writeFileSync(victim, 'untouched');
    // another user of a shared temp dir, knowing the execution id, links the script's old name to a file of the worker's user
    symlinkSync(victim, path.join(tmp, `hodei-script-${id}`));
    const run = await h.assign({ script: 'echo ran' }, { to: w, id });
    const final = await run.final;
    expect(final.status).toBe('completed');
    expect(text(run.lines)).toEqual(['ran']);
    expect(readFileSync(victim, 'utf8')).toBe('untouched');
    await w.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('reports a job killed by a signal', async () => {
    const run = await h.assign({ command: 'kill -9 $$' });
    const final = await run.final;
    expect(final).toMatchObject({ status: 'failed', exit_code: null, signal: 'SIGKILL', message: 'killed by signal SIGKILL' });
  });

  it('turns ::progress lines into progress events and keeps them in the log', async () => {
    const run = await h.assign({ command: 'for i in 1 2 3 4 5 6 7 8 9 10; do echo "::progress $i/10 step $i"; done; echo "::progress 100%"' });
    const final = await run.final;
    expect(final.status).toBe('completed');
    expect(run.lines).toHaveLength(11);
    const progress = run.statuses.filter((s) => s.progress).map((s) => s.progress!);
    // throttled: fewer events than lines, but the last one always arrives
    expect(progress.length).toBeGreaterThanOrEqual(1);
    expect(progress.length).toBeLessThan(11);
    expect(progress[progress.length - 1]).toMatchObject({ percent: 100, current: null, total: null, message: null });
    expect(run.statuses[run.statuses.length - 1]!.status).toBe('completed');
  });

  it('takes no progress from a line over 64 KiB: neither its first piece nor a later one that starts with ::progress', async () => {
    const run = await h.assign({ command: `printf '::progress 1/2 %070000d\\n' 0; printf '%065536d::progress 1/2 late\\n' 0` });
    expect((await run.final).status).toBe('completed');
    expect(run.lines.map((l) => l.line.slice(0, 16))).toEqual(['::progress 1/2 0', '0'.repeat(16), '0'.repeat(16), '::progress 1/2 l']);
    expect(run.statuses.filter((s) => s.progress)).toEqual([]);
  });

  it('takes the progress a job redrew in place with \\r from the last part of the line', async () => {
    for (const command of [`printf 'downloading\\r::progress 3/4 fetched\\n'`, `for i in 1 2 3; do printf '::progress %d/4 fetched\\r' $i; done; echo`]) {
      const run = await h.assign({ command });
      expect((await run.final).status).toBe('completed');
      const progress = run.statuses.filter((s) => s.progress).map((s) => s.progress!);
      expect(progress.at(-1), command).toMatchObject({ current: 3, total: 4, message: 'fetched' });
    }
  });
});

describe('assignments', () => {
  it('refuses an invalid assignment with a reason', async () => {
    const reply = await h.bus.nc.request(h.bus.subjects.assign(h.worker.id), new TextEncoder().encode('{"execution_id":"nope"}'), { timeout: 2000 });
    const ack = JSON.parse(new TextDecoder().decode(reply.data));
    expect(ack.accepted).toBe(false);
    expect(ack.reason).toMatch(/invalid assignment/);
  });

  it('refuses work beyond its slots and takes it again once a slot frees', async () => {
    const w = await h.start({ capacity: { slots: 1, cpu_cores: 1, memory_bytes: 1e9 } });
    const first = await h.assign({ command: 'sleep 0.3' }, { to: w });
    expect(first.ack.accepted).toBe(true);
    const second = await h.assign({ command: 'true' }, { to: w });
    expect(second.ack).toEqual({ accepted: false, reason: 'no free slot (1/1 busy)' });
    // the same assignment re-sent is acknowledged, not run twice
    const again = await h.assign({ command: 'sleep 0.3' }, { to: w, id: first.id });
    expect(again.ack.accepted).toBe(true);
    await first.final;
    // also once it ended (an answer that came too late, asked again): acknowledged, not run again
    const late = await h.assign({ command: 'sleep 0.3' }, { to: w, id: first.id });
    expect(late.ack.accepted).toBe(true);
    expect(w.running()).toEqual([]);
    const third = await h.assign({ command: 'true' }, { to: w });
    expect(third.ack.accepted).toBe(true);
    expect((await third.final).status).toBe('completed');
    expect(first.statuses.filter((s) => s.status === 'running' && !s.progress)).toHaveLength(1);
    await w.stop();
  });

  it('beats with its running executions', async () => {
    const beats: Array<{ running_executions: string[]; status: string }> = [];
    const sub = h.bus.nc.subscribe(h.bus.subjects.heartbeat(h.worker.id), {
      callback: (_e, m) => void beats.push(JSON.parse(new TextDecoder().decode(m.data))),
    });
    const run = await h.assign({ command: 'sleep 0.4' });
    await run.final;
    sub.unsubscribe();
    expect(beats.length).toBeGreaterThanOrEqual(2);
    expect(beats.some((b) => b.running_executions.includes(run.id))).toBe(true);
    expect(beats.every((b) => b.status === 'online')).toBe(true);
  });
});

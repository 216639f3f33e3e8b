import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, decodeJson, newId } from '@hodei/platform';
import type { LogMessage, LogStream } from '@hodei/types';
import { Execution } from '../src/execution.js';
import { LINE_CONTINUES_SUFFIX, MAX_LINE_BYTES } from '../src/index.js';
import { PublishOutage } from '../src/outage.js';
import { Reaper } from '../src/reaper.js';
import { LogShipper, MAX_BATCH_LINES } from '../src/shipper.js';
import type { JobHandle, Spawner } from '../src/spawn.js';
import { alive, setup, spec, text, waitFor } from './harness.js';

let h: Awaited<ReturnType<typeof setup>>;
/** Where the jobs leave files; removed with everything in it after the file. */
let scratch = '';
beforeAll(async () => {
  scratch = mkdtempSync(path.join(os.tmpdir(), 'hodei-logs-'));
  h = await setup();
});
afterAll(async () => {
  await h.teardown();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('log lines', () => {
  it('delivers 100,000 lines in order, none twice, in batches', async () => {
    const run = await h.assign({ command: 'seq 1 100000; seq 1 3 >&2' });
    const final = await run.final;
    expect(final).toMatchObject({ status: 'completed', last_seq: 100_003 });
    expect(run.lines).toHaveLength(100_003);
    const stdout = run.lines.filter((l) => l.stream === 'stdout');
    expect(stdout.map((l) => Number(l.line))).toEqual(Array.from({ length: 100_000 }, (_, i) => i + 1));
    expect(run.lines.map((l) => l.seq)).toEqual(Array.from({ length: 100_003 }, (_, i) => i + 1));
    // batched, and no batch over 200 lines
    expect(run.batches).toBeLessThan(100_003 / 10);
    expect(run.batches).toBeGreaterThanOrEqual(100_003 / 200);
  }, 60_000);

  it('ships lines while the job runs, not bunched at the end', async () => {
    const run = await h.assign({ command: 'for i in 1 2 3 4 5 6; do echo "tick $i"; sleep 0.2; done' });
    const final = await run.final;
    const finishedAt = Date.parse(final.finished_at!);
    expect(text(run.lines)).toEqual(['tick 1', 'tick 2', 'tick 3', 'tick 4', 'tick 5', 'tick 6']);
    // 5 sleeps of 200 ms between the lines: their arrivals spread over about a second, the first
    // about a second before the job ended
    expect(run.lines[5]!.received_at - run.lines[0]!.received_at).toBeGreaterThan(700);
    expect(finishedAt - run.lines[0]!.received_at).toBeGreaterThan(800);
    // each arrived soon after the worker read it (its timestamp)
    for (const l of run.lines) expect(Math.abs(l.received_at - Date.parse(l.timestamp))).toBeLessThan(1000);
  });

  it('splits a 1 MiB line into marked 64 KiB pieces without losing a byte', async () => {
    const size = 1024 * 1024;
    const run = await h.assign({ command: `head -c ${size} /dev/zero | tr '\\0' x; echo; echo after` });
    const final = await run.final;
    expect(final.status).toBe('completed');
    const pieces = text(run.lines);
    expect(pieces[pieces.length - 1]).toBe('after');
    const longPieces = pieces.slice(0, -1);
    expect(longPieces).toHaveLength(size / MAX_LINE_BYTES);
    for (const p of longPieces.slice(0, -1)) {
      expect(p.endsWith(LINE_CONTINUES_SUFFIX)).toBe(true);
      expect(p.length - LINE_CONTINUES_SUFFIX.length).toBe(MAX_LINE_BYTES);
    }
    expect(longPieces[longPieces.length - 1]!.endsWith(LINE_CONTINUES_SUFFIX)).toBe(false);
    const joined = longPieces.map((p) => (p.endsWith(LINE_CONTINUES_SUFFIX) ? p.slice(0, -LINE_CONTINUES_SUFFIX.length) : p)).join('');
    expect(joined).toBe('x'.repeat(size));
  });

  it('does not cut a multi-byte character when splitting', async () => {
    // 65535 ASCII bytes then "é" (2 bytes) straddling the 64 KiB boundary
    const run = await h.assign({ command: `head -c 65535 /dev/zero | tr '\\0' a; printf '\\303\\251tail\\n'` });
    await run.final;
    const [a, b] = text(run.lines);
    expect(a).toBe('a'.repeat(65535) + LINE_CONTINUES_SUFFIX);
    expect(b).toBe('étail');
  });

  it('replaces invalid UTF-8 and keeps going', async () => {
    const run = await h.assign({ command: `printf 'ok \\377\\376 bytes\\n'; head -c 20000 /dev/urandom; printf '\\nstill alive\\n'` });
    const final = await run.final;
    expect(final.status).toBe('completed');
    const lines = text(run.lines);
    expect(lines[0]).toBe('ok \uFFFD\uFFFD bytes');
    expect(lines[lines.length - 1]).toBe('still alive');
    expect(run.lines.map((l) => l.seq)).toEqual(lines.map((_, i) => i + 1));
  });

  it('keeps a last line that has no newline', async () => {
    const run = await h.assign({ command: `printf 'one\\ntwo'; printf 'err-no-newline' >&2` });
    await run.final;
    expect(text(run.lines).sort()).toEqual(['err-no-newline', 'one', 'two']);
  });

  it('ends when the main process exits even if a setsid child keeps stdout open', async () => {
    const started = Date.now();
    const run = await h.assign({
      command: `echo before; setsid sh -c 'echo $$ > "${scratch}/pid"; sleep 30' & sleep 0.1; cat "${scratch}/pid" | sed 's/^/pid /'; echo done`,
    });
    const final = await run.final;
    expect(Date.now() - started).toBeLessThan(3000);
    expect(final.status).toBe('completed');
    const lines = text(run.lines);
    expect(lines[0]).toBe('before');
    expect(lines[lines.length - 1]).toBe('done');
    const pid = Number(lines.find((l) => l.startsWith('pid '))!.slice(4));
    // what the job left behind is cleaned up
    expect(await waitFor(() => !alive(pid), 3000)).toBe(true);
  });

  it('keeps the output a busy spawner relays after the exit, when no process is left to hold the pipes', async () => {
    // spawner.pl reaps a job that exits before its start is read in the same round as that start,
    // before it reads the pipes: 'exited' comes first, the output in its next round. On a busy
    // machine that came more than 50 ms later, and 3 of 200 `seq 1 20` jobs completed with no line.
    const subject = h.bus.subjects.logs(h.worker.id + '-late-output');
    const lines: string[] = [];
    const sub = h.bus.nc.subscribe(subject, {
      callback: (_e, m) => {
        for (const b of (decodeJson(m.data) as LogMessage).batches) lines.push(...b.lines.map((l) => l.line));
      },
    });
    await h.bus.nc.flush();
    const logger = createLogger('test', 'silent');
    const outage = new PublishOutage(logger);
    const reaper = new Reaper(300, logger);
    const late: Spawner = {
      spawn: async () => {
        const listeners: Array<(stream: LogStream, chunk: Buffer) => void> = [];
        let close!: () => void;
        const closed = new Promise<void>((r) => (close = r));
        const relay = setTimeout(() => {
          for (const l of listeners) l('stdout', Buffer.from('1\n2\n'));
          close();
        }, 300);
        const handle: JobHandle = {
          pid: 0,
          onData: (l) => void listeners.push(l),
          exited: Promise.resolve({ code: 0, signal: null, alone: true }),
          closed,
          pause: () => undefined,
          resume: () => undefined,
          destroy: () => clearTimeout(relay),
        };
        return handle;
      },
      close: async () => undefined,
    };
    const workerId = newId();
    const execution = new Execution(
      {
        js: h.bus.js,
        subjects: h.bus.subjects,
        workerId,
        baseEnv: {},
        tmpDir: scratch,
        runningAfterMs: 20,
        logs: new LogShipper(h.bus.js, subject, workerId, logger, () => 1024 * 1024, outage),
        outage,
        reaper,
        spawner: late,
        logger,
        onSlotFree: () => undefined,
        maxPayload: () => 1024 * 1024,
      },
      { execution_id: newId(), job_id: null, attempt: 1, spec: spec({ command: 'seq 1 2' }) },
    );
    try {
      execution.start();
      expect(await execution.finished).toMatchObject({ status: 'completed', exitCode: 0 });
      await h.bus.nc.flush();
      expect(lines).toEqual(['1', '2']);
    } finally {
      sub.unsubscribe();
      await reaper.close();
    }
  });
});

describe('log shipper', () => {
  const nowIso = () => new Date().toISOString();

  it('lines of several executions read at one moment leave in one message; a flood in one does not hold the others back', async () => {
    const messages: LogMessage[] = [];
    const sub = h.bus.nc.subscribe(h.bus.subjects.logs(h.worker.id + '-shipper-test'), {
      callback: (_e, m) => messages.push(decodeJson(m.data) as LogMessage),
    });
    await h.bus.nc.flush();
    const workerId = newId();
    const shipper = new LogShipper(h.bus.js, h.bus.subjects.logs(h.worker.id + '-shipper-test'), workerId, createLogger('test', 'silent'), () => 1024 * 1024);
    const [a, b, c] = [newId(), newId(), newId()].map((id) => shipper.open(id, () => undefined));
    for (let i = 1; i <= 1000; i++) a!.add(i, 'stdout', `a${i}`, nowIso());
    b!.add(1, 'stdout', 'b1', nowIso());
    c!.add(1, 'stderr', 'c1', nowIso());
    await Promise.all([a!.flush(), b!.flush(), c!.flush()]);
    await h.bus.nc.flush();
    sub.unsubscribe();
    // the first message carries an even share of a's lines (a third of 200) and b's and c's one line each
    expect(messages[0]!.worker_id).toBe(workerId);
    expect(messages[0]!.batches.map((x) => [x.execution_id, x.lines.length])).toEqual([
      [a!.executionId, 66],
      [b!.executionId, 1],
      [c!.executionId, 1],
    ]);
    const aLines = messages.flatMap((m) => m.batches.filter((x) => x.execution_id === a!.executionId).flatMap((x) => x.lines.map((l) => l.seq)));
    expect(aLines).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    expect(messages.every((m) => m.batches.reduce((n, x) => n + x.lines.length, 0) <= MAX_BATCH_LINES)).toBe(true);
  });
  it('lines that keep coming leave together in a few messages; a line after a quiet spell leaves alone', async () => {
    const subject = h.bus.subjects.logs(h.worker.id + '-coalesce');
    const messages: LogMessage[] = [];
    const sub = h.bus.nc.subscribe(subject, { callback: (_e, m) => messages.push(decodeJson(m.data) as LogMessage) });
    await h.bus.nc.flush();
    const shipper = new LogShipper(h.bus.js, subject, newId(), createLogger('test', 'silent'), () => 1024 * 1024);
    const log = shipper.open(newId(), () => undefined);
    // one line per turn of the event loop, as a job printing without pause is read
    for (let i = 1; i <= 400; i++) {
      log.add(i, 'stdout', `line ${i}`, nowIso());
      await new Promise((resolve) => setImmediate(resolve));
    }
    await log.flush();
    await new Promise((resolve) => setTimeout(resolve, 50));
    log.add(401, 'stdout', 'after a pause', nowIso());
    await log.flush();
    await h.bus.nc.flush();
    sub.unsubscribe();
    const seqs = messages.flatMap((m) => m.batches.flatMap((b) => b.lines.map((l) => l.seq)));
    expect(seqs).toEqual(Array.from({ length: 401 }, (_, i) => i + 1));
    // one message per line read (401) before; now at most one each COALESCE_MS while they came
    expect(messages.length).toBeLessThan(400 / 4);
    expect(messages.at(-1)!.batches.flatMap((b) => b.lines.map((l) => l.line))).toEqual(['after a pause']);
  });

  it('keeps every message under the server\'s max_payload, whatever the escaping costs', async () => {
    const subject = h.bus.subjects.logs(h.worker.id + '-small-payload');
    const sizes: number[] = [];
    const lines: number[] = [];
    const sub = h.bus.nc.subscribe(subject, {
      callback: (_e, m) => {
        sizes.push(m.data.length);
        for (const b of (decodeJson(m.data) as LogMessage).batches) lines.push(...b.lines.map((l) => l.seq));
      },
    });
    await h.bus.nc.flush();
    const maxPayload = 100_000;
    const shipper = new LogShipper(h.bus.js, subject, newId(), createLogger('test', 'silent'), () => maxPayload);
    const log = shipper.open(newId(), () => undefined);
    // 10,000 control characters a line: 60,000 bytes of JSON (\u0001 each), two lines overflow
    for (let i = 1; i <= 12; i++) log.add(i, 'stdout', '\u0001'.repeat(10_000), nowIso());
    await log.flush();
    await h.bus.nc.flush();
    sub.unsubscribe();
    expect(lines).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(Math.max(...sizes)).toBeLessThanOrEqual(maxPayload);
    expect(sizes.length).toBeGreaterThanOrEqual(12);
  });

  it('while worker-manager is behind, a flood already read waits in the worker; a few lines of another job still go', async () => {
    const subject = h.bus.subjects.logs(h.worker.id + '-held');
    const received: Array<{ execution: string; seq: number }> = [];
    const sub = h.bus.nc.subscribe(subject, {
      callback: (_e, m) => {
        for (const b of (decodeJson(m.data) as LogMessage).batches) received.push(...b.lines.map((l) => ({ execution: b.execution_id, seq: l.seq })));
      },
    });
    await h.bus.nc.flush();
    const shipper = new LogShipper(h.bus.js, subject, newId(), createLogger('test', 'silent'), () => 1024 * 1024);
    shipper.setBacklog(true);
    const flood = shipper.open(newId(), () => undefined);
    const quiet = shipper.open(newId(), () => undefined);
    for (let i = 1; i <= 1000; i++) flood.add(i, 'stdout', `f${i}`, nowIso());
    for (let i = 1; i <= 3; i++) quiet.add(i, 'stdout', `q${i}`, nowIso());
    await quiet.flush();
    await h.bus.nc.flush();
    expect(received).toEqual([1, 2, 3].map((seq) => ({ execution: quiet.executionId, seq })));
    expect(flood.waiting()).toBe(1000);

    shipper.setBacklog(false);
    await flood.flush();
    await h.bus.nc.flush();
    sub.unsubscribe();
    expect(received.filter((r) => r.execution === flood.executionId).map((r) => r.seq)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
  });
});

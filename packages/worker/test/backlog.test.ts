// worker-manager's `LogBacklog`: while it is behind storing lines, workers stop reading their jobs'
// output (the lines wait in the pipe, then arrive in order); they read again when it says so, or
// when it stops repeating that it is behind.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeJson } from '@hodei/platform';
import type { LogBacklog } from '@hodei/types';
import { BACKLOG_SIGNAL_TTL_MS } from '../src/shipper.js';
import { setup, waitFor, type Run } from './harness.js';

let h: Awaited<ReturnType<typeof setup>>;
beforeAll(async () => {
  h = await setup();
});
afterAll(async () => {
  await h.teardown();
});

const TICKER = 'i=0; while :; do i=$((i+1)); echo "tick $i"; sleep 0.01; done';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function signal(behind: boolean): Promise<void> {
  h.bus.nc.publish(h.bus.subjects.logsBacklog, encodeJson({ behind, pending: behind ? 1000 : 0 } satisfies LogBacklog));
  await h.bus.nc.flush();
}

/** The lines stop coming while `behind` holds (lines already read may still land in the first second). */
async function expectStalled(run: Run, forMs: number): Promise<number> {
  await sleep(1000);
  const stalledAt = run.lines.length;
  await sleep(forMs);
  expect(run.lines.length).toBe(stalledAt);
  return stalledAt;
}

function expectInOrder(run: Run): void {
  expect(run.lines.map((l) => l.seq)).toEqual(run.lines.map((_, i) => i + 1));
  expect(run.lines.map((l) => l.line)).toEqual(run.lines.map((_, i) => `tick ${i + 1}`));
}

describe('log backlog', () => {
  it('pauses reading while worker-manager is behind, and resumes when it catches up: no line lost or reordered', async () => {
    const run = await h.assign({ command: TICKER });
    expect(run.ack.accepted).toBe(true);
    expect(await waitFor(() => run.lines.length >= 10, 5000)).toBe(true);

    await signal(true);
    const repeat = setInterval(() => void signal(true), 1000);
    const stalledAt = await expectStalled(run, 1500).finally(() => clearInterval(repeat));

    await signal(false);
    // what the job wrote meanwhile was waiting in the pipe: it arrives now, then the ticks go on
    expect(await waitFor(() => run.lines.length >= stalledAt + 150, 5000)).toBe(true);
    expectInOrder(run);
    expect((await h.control(h.worker, { action: 'cancel', execution_id: run.id })).ok).toBe(true);
    expect((await run.final).status).toBe('cancelled');
    expectInOrder(run);
  });

  it('resumes on its own when worker-manager stops saying it is behind', async () => {
    const run = await h.assign({ command: TICKER });
    expect(await waitFor(() => run.lines.length >= 10, 5000)).toBe(true);
    await signal(true);
    const stalledAt = await expectStalled(run, 1000); // 2 s of the 3 s without a repeat
    const resumed = await waitFor(() => run.lines.length > stalledAt, BACKLOG_SIGNAL_TTL_MS + 3000);
    expect(resumed).toBe(true);
    expect((await h.control(h.worker, { action: 'cancel', execution_id: run.id })).ok).toBe(true);
    await run.final;
    expectInOrder(run);
  });

  it('a job assigned while worker-manager is behind starts, but its output waits in the pipe', async () => {
    await signal(true);
    const repeat = setInterval(() => void signal(true), 1000);
    try {
      const run = await h.assign({ command: 'echo first; echo second; sleep 30' });
      expect(run.ack.accepted).toBe(true);
      await sleep(1000);
      expect(run.lines).toEqual([]);
      clearInterval(repeat);
      await signal(false);
      expect(await waitFor(() => run.lines.length === 2, 5000)).toBe(true);
      expect(run.lines.map((l) => l.line)).toEqual(['first', 'second']);
      expect((await h.control(h.worker, { action: 'cancel', execution_id: run.id })).ok).toBe(true);
      expect((await run.final).status).toBe('cancelled');
    } finally {
      clearInterval(repeat);
      await signal(false);
    }
  });
});

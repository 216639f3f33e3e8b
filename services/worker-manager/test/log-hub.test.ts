// A log stream's subscriber against a store and a connection the test controls: when the history it
// read stopped at lines missing from the store (a batch a killed worker-manager had taken, or one
// another replica stores later), the lines stored past them still reach it as soon as they can,
// not after the final grace; and a line that never comes holds back neither the stream's end nor the
// lines stored past it.
import type { Pool, SseConnection } from '@hodei/platform';
import type { LogLine } from '@hodei/types';
import { describe, expect, it } from 'vitest';
import { LogHub, type FinalInfo } from '../src/live/log-hub.js';
import { lines, until } from './helpers.js';

const ID = 'e1';
/** Far longer than any wait here: a stream that needs it to complete fails the test. */
const GRACE = 60_000;

/** The log_lines table of one execution; a read sees the lines stored when it starts and answers when `hold` lets it. */
class StoreHub extends LogHub {
  readonly stored = new Map<number, LogLine>();
  hold: Promise<void> | undefined;
  reads = 0;

  constructor(grace = GRACE) {
    super({} as Pool, grace);
  }

  store(ls: LogLine[]): void {
    for (const l of ls) this.stored.set(l.seq, l);
  }

  override async readHistory(_id: string, afterSeq: number, limit: number): Promise<LogLine[]> {
    this.reads++;
    const page = [...this.stored.values()].filter((l) => l.seq > afterSeq && l.seq <= afterSeq + limit).sort((a, b) => a.seq - b.seq);
    await this.hold;
    return page;
  }

  /** What the logs consumer does with a batch: fan it out, store it, let it go from memory. */
  ingest(ls: LogLine[]): void {
    const batch = this.publish(ID, ls);
    this.store(ls);
    this.persisted(ID, batch);
  }
}

class FakeConn {
  closed = false;
  backlog = 0;
  text = '';
  private closeHandlers: (() => void)[] = [];
  write(text: string): boolean {
    this.text += text;
    return true;
  }
  event(event: string, data: unknown): boolean {
    return this.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }
  drained(): Promise<void> {
    return Promise.resolve();
  }
  onClose(fn: () => void): void {
    this.closeHandlers.push(fn);
  }
  end(): void {
    this.closed = true;
    for (const fn of this.closeHandlers.splice(0)) fn();
  }
  get seqs(): number[] {
    return [...this.text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
  }
  get completed(): boolean {
    return this.text.includes('event: completed');
  }
}

const final = (last_seq: number): FinalInfo => ({ status: 'completed', exit_code: 0, signal: null, message: null, duration_ms: 10, last_seq });
const upTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

/** A follower whose history read found lines 101..300 stored and 1..100 missing. */
async function behindAGap(hub: StoreHub) {
  hub.store(lines(101, 300));
  const conn = new FakeConn();
  const sub = hub.subscribe(ID, conn as unknown as SseConnection, 1);
  await sub.catchUp();
  expect(conn.seqs).toEqual([]);
  return conn;
}

describe('a log stream whose history stopped at missing lines', () => {
  it('gets the lines stored past them as soon as the missing ones come live, and completed with the final status', async () => {
    const hub = new StoreHub();
    const conn = await behindAGap(hub);
    hub.ingest(lines(1, 100)); // the batch a killed worker-manager had taken, delivered again
    await until(async () => conn.seqs.length === 300, 1000, 'lines 1..300');
    hub.finish(ID, final(300));
    expect(conn.seqs).toEqual(upTo(300));
    expect(conn.completed).toBe(true);
    expect(conn.closed).toBe(true);
  });

  it('gets them while the job runs when another replica stores the missing ones', async () => {
    const hub = new StoreHub();
    const conn = await behindAGap(hub);
    hub.store(lines(1, 100)); // stored elsewhere: never delivered here
    await until(async () => conn.seqs.length === 300, 2000, 'lines 1..300');
    expect(conn.seqs).toEqual(upTo(300));
    expect(conn.completed).toBe(false);
  });

  it('completes at once when the final status comes from another replica, which stored the missing lines first', async () => {
    const hub = new StoreHub();
    const conn = await behindAGap(hub);
    hub.store(lines(1, 100));
    hub.finish(ID, final(300)); // relayed: recorded once every line was stored
    await until(async () => conn.completed, 200, 'completed');
    expect(conn.seqs).toEqual(upTo(300));
  });

  it('reads the store again when the final status comes during a read that started before the missing lines were stored', async () => {
    const hub = new StoreHub();
    const conn = await behindAGap(hub);
    let release!: () => void;
    hub.hold = new Promise((resolve) => (release = resolve));
    const reads = hub.reads;
    await until(async () => hub.reads > reads, 1000, 'a read of the store'); // looking again for 1..100
    hub.store(lines(1, 100));
    hub.finish(ID, final(300));
    hub.hold = undefined;
    release();
    await until(async () => conn.completed, 200, 'completed');
    expect(conn.seqs).toEqual(upTo(300));
  });
});

describe('a log stream of an execution ended without one of its lines', () => {
  it('waits the grace once, then sends the lines stored past the missing one, and completed', async () => {
    const grace = 500;
    const hub = new StoreHub(grace);
    hub.store(lines(1, 49));
    hub.store(lines(51, 300)); // 50 never came: its final status was recorded without it
    const conn = new FakeConn();
    const sub = hub.subscribe(ID, conn as unknown as SseConnection, 1);
    const start = Date.now();
    sub.setFinal(final(300)); // as a stream opened after the end: the final status, then the history
    await sub.catchUp();
    expect(conn.seqs).toEqual(upTo(49));
    await until(async () => conn.completed, grace * 3, 'completed');
    expect(Date.now() - start).toBeLessThan(grace * 2);
    expect(conn.seqs).toEqual(upTo(300).filter((n) => n !== 50));
  });
});

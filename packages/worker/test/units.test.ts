import { describe, expect, it } from 'vitest';
import { LineSplitter, LINE_CONTINUES_SUFFIX, MAX_LINE_BYTES } from '../src/lines.js';
import { loadWorkerConfig, parseLabels, parseProgress, redactWorkerConfig, WorkerConfigError } from '../src/index.js';

const split = (...chunks: Buffer[]) => {
  const out: string[] = [];
  const s = new LineSplitter((l) => out.push(l));
  for (const c of chunks) s.push(c);
  s.end();
  return out;
};

describe('LineSplitter', () => {
  it('joins lines across chunks and strips \\r', () => {
    expect(split(Buffer.from('ab'), Buffer.from('c\r\nd'), Buffer.from('\n\ne'))).toEqual(['abc', 'd', '', 'e']);
  });

  it('flags a last line the stream ended without \\n, keeping its \\r; no other line', () => {
    const seen: Array<[string, boolean]> = [];
    const s = new LineSplitter((l, _bytes, noNewline) => seen.push([l, noNewline]));
    s.push(Buffer.from('a\r\nb'));
    s.push(Buffer.from('\r'));
    s.end();
    expect(seen).toEqual([['a', false], ['b\r', true]]);
    const whole: boolean[] = [];
    const t = new LineSplitter((_l, _bytes, noNewline) => whole.push(noNewline));
    t.push(Buffer.from('a\n'));
    t.end();
    expect(whole).toEqual([false]);
  });

  it('splits an overlong line arriving in small chunks', () => {
    const chunks = Array.from({ length: 40 }, () => Buffer.alloc(5000, 'z'));
    const out = split(...chunks, Buffer.from('\n'));
    expect(out).toHaveLength(Math.ceil(200_000 / MAX_LINE_BYTES));
    expect(out.slice(0, -1).every((l) => l.endsWith(LINE_CONTINUES_SUFFIX))).toBe(true);
    expect(out.map((l) => l.replace(LINE_CONTINUES_SUFFIX, '')).join('')).toBe('z'.repeat(200_000));
  });

  it('says which lines are whole: not the pieces of one over MAX_LINE_BYTES, whether it came at once or in chunks', () => {
    for (const chunks of [[Buffer.alloc(MAX_LINE_BYTES + 10, 'x'), Buffer.from('\nshort\n')], [Buffer.alloc(MAX_LINE_BYTES - 5, 'x'), Buffer.alloc(20, 'x'), Buffer.from('\nshort')]]) {
      const whole: boolean[] = [];
      const s = new LineSplitter((_l, _bytes, _noNewline, w) => whole.push(w));
      for (const c of chunks) s.push(c);
      s.end();
      expect(whole).toEqual([false, false, true]);
    }
  });

  it('keeps a multi-byte character split across chunks whole', () => {
    const euro = Buffer.from('€');
    expect(split(Buffer.concat([Buffer.from('a'), euro.subarray(0, 1)]), Buffer.concat([euro.subarray(1), Buffer.from('b\n')]))).toEqual(['a€b']);
  });
});

describe('parseProgress', () => {
  const now = '2026-11-22T04:07:01.123Z';
  it('reads CURRENT/TOTAL with a message', () => {
    expect(parseProgress('::progress 3/12 copying files', now)).toEqual({ current: 3, total: 12, percent: 25, message: 'copying files', updated_at: now });
  });
  it('reads a percentage', () => {
    expect(parseProgress('::progress 42%', now)).toEqual({ current: null, total: null, percent: 42, message: null, updated_at: now });
  });
  it('ignores lines that only look alike', () => {
    expect(parseProgress('::progress soon', now)).toBeNull();
    expect(parseProgress('::progressive 1/2', now)).toBeNull();
    expect(parseProgress('echo ::progress 1/2', now)).toBeNull();
  });
  it('ignores a total of 0, a negative number and numbers too long to hold; caps a percentage at 100', () => {
    const huge = '9'.repeat(400);
    for (const line of ['::progress 5/0', '::progress 0/0 nothing', '::progress -1/3', `::progress 1/${huge}`, `::progress ${huge}/3`, `::progress ${huge}%`]) {
      expect(parseProgress(line, now), line).toBeNull();
    }
    expect(parseProgress('::progress 150%', now)).toMatchObject({ percent: 100 });
    expect(parseProgress('::progress 7/3 over', now)).toMatchObject({ current: 7, total: 3, percent: 100, message: 'over' });
  });
  it('reads the last of the values a job redrew in place with \\r, as the terminal shows it', () => {
    const redrawn = Array.from({ length: 10 }, (_, i) => `::progress ${i + 1}/10 part ${i + 1}`).join('\r');
    expect(parseProgress(redrawn, now)).toEqual({ current: 10, total: 10, percent: 100, message: 'part 10', updated_at: now });
    expect(parseProgress('::progress 10%\r::progress 55%\r  \r', now)).toMatchObject({ percent: 55, message: null });
    expect(parseProgress('::progress 1/2\rdone, no progress', now)).toBeNull();
    expect(parseProgress('downloading\r::progress 3/4', now)).toMatchObject({ current: 3, total: 4 });
  });
});

describe('worker config', () => {
  it('applies defaults', () => {
    const c = loadWorkerConfig({});
    expect(c.capacity.slots).toBe(4);
    expect(c.capacity.cpu_cores).toBeGreaterThan(0);
    expect(c.capacity.memory_bytes).toBeGreaterThan(0);
    expect(c.schedulerUrl).toBe('http://127.0.0.1:8081');
    expect(c.heartbeatIntervalMs).toBe(1000);
    expect(c.killGraceMs).toBe(5000);
    expect(c.id).toMatch(/^[0-9a-f-]{36}$/);
  });
  it('parses labels as JSON or k=v pairs', () => {
    expect(parseLabels('{"pool":"gpu"}')).toEqual({ pool: 'gpu' });
    expect(parseLabels('pool=gpu, zone = a')).toEqual({ pool: 'gpu', zone: 'a' });
    expect(loadWorkerConfig({ HODEI_WORKER_LABELS: 'a=1' }).labels).toEqual({ a: '1' });
  });
  it('names the bad variable', () => {
    expect(() => loadWorkerConfig({ HODEI_WORKER_SLOTS: 'many' })).toThrow(WorkerConfigError);
    expect(() => loadWorkerConfig({ HODEI_WORKER_LABELS: 'novalue' })).toThrow(/HODEI_WORKER_LABELS/);
    expect(() => loadWorkerConfig({ HODEI_WORKER_ID: 'x' })).toThrow(/HODEI_WORKER_ID/);
    // a token with a line ending registered with "Bearer s3cret\n" in fetch's error, for ever
    expect(() => loadWorkerConfig({ HODEI_API_TOKEN: 's3cret\n' })).toThrow(/^invalid worker configuration: HODEI_API_TOKEN: must be printable ASCII[^\n]*$/);
  });
  it('logs no NATS credential', () => {
    const c = loadWorkerConfig({ NATS_URL: 'nats://agent:pwSecret@nats:4222', HODEI_API_TOKEN: 'tokSecret' });
    expect(JSON.stringify(redactWorkerConfig(c))).not.toContain('Secret');
    expect(redactWorkerConfig(c).natsUrl).toBe('nats://***@nats:4222');
    // an ftp:// or mailto: scheduler passed, and the agent retried its registration for ever
    for (const url of ['ftp://scheduler:8081', 'mailto:ops@example.com'])
      expect(() => loadWorkerConfig({ HODEI_SCHEDULER_URL: url }), url).toThrow(/HODEI_SCHEDULER_URL: must be an http:\/\/ or https:\/\/ URL/);
    expect(loadWorkerConfig({ HODEI_SCHEDULER_URL: 'https://scheduler:8081' }).schedulerUrl).toBe('https://scheduler:8081');
    // the scheduler refuses a worker offering less than 1 MiB: the agent says so at start
    expect(() => loadWorkerConfig({ HODEI_WORKER_MEMORY_BYTES: '1' })).toThrow(/HODEI_WORKER_MEMORY_BYTES: must be at least 1048576/);
    // the same range as the services, which pass theirs on to the agents they start
    expect(() => loadWorkerConfig({ HODEI_HEARTBEAT_INTERVAL_MS: '5' })).toThrow(/HODEI_HEARTBEAT_INTERVAL_MS: must be at least 10 \(ms\)/);
    expect(() => loadWorkerConfig({ HODEI_HEARTBEAT_INTERVAL_MS: '500', HODEI_HEARTBEAT_TIMEOUT_MS: '400' })).toThrow(
      /HODEI_HEARTBEAT_TIMEOUT_MS: must be greater than HODEI_HEARTBEAT_INTERVAL_MS \(500\)/,
    );
  });
  it('takes an empty variable (`NAME=` in a .env file) as unset', () => {
    const names = ['HODEI_API_TOKEN', 'HODEI_WORKER_ID', 'HODEI_WORKER_NAME', 'HODEI_WORKER_SLOTS', 'HODEI_WORKER_CPU_CORES', 'HODEI_WORKER_MEMORY_BYTES',
      'HODEI_SCHEDULER_URL', 'HODEI_HEARTBEAT_TIMEOUT_MS', 'HODEI_KILL_GRACE_MS', 'HODEI_WORKER_TMPDIR', 'HODEI_WORKER_SPAWNER', 'LOG_LEVEL', 'HODEI_WORKER_METRICS_PORT'];
    const c = loadWorkerConfig(Object.fromEntries(names.map((n) => [n, ''])));
    expect(c.apiToken).toBeUndefined();
    expect([c.capacity.slots, c.schedulerUrl, c.killGraceMs, c.natsLostTimeoutMs, c.spawner, c.logLevel, c.metricsPort]).toEqual([4, 'http://127.0.0.1:8081', 5000, 3000, 'process', 'info', undefined]);
    expect(c.capacity.memory_bytes).toBeGreaterThan(0);
  });
  it('keeps the API token out of the job environment', () => {
    const c = loadWorkerConfig({ HODEI_API_TOKEN: 's3cret', FOO: 'bar' });
    expect(c.apiToken).toBe('s3cret');
    expect(c.baseEnv).toEqual({ FOO: 'bar' });
  });
});

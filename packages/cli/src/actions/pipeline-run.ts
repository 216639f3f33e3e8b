// `hodei pipelines run ID [--follow]`: start a run, then (with --follow) print each job's status
// change from the run's event stream and the log lines of its executions prefixed with the job
// name, until the run ends. Exit 0 completed, 1 failed, 130 cancelled.
import { Id, LogLine, z } from '@hodei/types';
import type { Ctx } from '../context.js';
import { CliError, UnreachableError } from '../errors.js';
import { followLogs } from '../follow.js';
import { isAbort } from '../http.js';
import { isOutage, Outage } from '../outage.js';
import { clock, statusText, stderr, visible } from '../output.js';
import { readSse } from '../sse.js';

export const RunJob = z
  .object({
    job_id: Id,
    name: z.string(),
    status: z.string(),
    execution_id: Id.nullable(),
    message: z.string().nullable().optional(),
    exit_code: z.number().int().nullable().optional(),
    duration_ms: z.number().nullable().optional(),
  })
  .loose();
export const PipelineRun = z.object({ id: Id, pipeline_id: Id, status: z.string(), jobs: z.array(RunJob) }).loose();
export type PipelineRun = z.infer<typeof PipelineRun>;
type RunJob = z.infer<typeof RunJob>;

export function runExitCode(status: string): number {
  return status === 'completed' ? 0 : status === 'cancelled' ? 130 : 1;
}

const ENDED = new Set(['completed', 'failed', 'cancelled', 'skipped', 'timed_out', 'lost']);

function parse<S extends z.ZodType>(schema: S, text: string): z.infer<S> | undefined {
  try {
    const r = schema.safeParse(JSON.parse(text));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

/** Follows a run to its end; returns the final run. */
export async function followRun(c: Ctx, runId: string, opts: { timestamps: boolean }): Promise<PipelineRun> {
  const { client, out } = c;
  const shown = new Map<string, string>(); // job id → status|execution printed last
  const followed = new Map<string, Promise<void>>(); // execution id → its log stream
  const logs: Promise<void>[] = [];
  // Streams of executions whose job had ended. A job that starts after them (its dependents) holds
  // its lines until they are all printed: each stream is its own connection, and a short job's
  // history can arrive after the first live lines of the job that waited for it.
  const ended = new Set<Promise<void>>();
  const width = { name: 0 };

  const prefix = (name: string, ts: string) => `${opts.timestamps ? `${out.out('gray', clock(ts))} ` : ''}${out.out('cyan', `[${name}]`)}`;
  const followExecution = (job: RunJob) => {
    const id = job.execution_id;
    if (!id || followed.has(id)) return;
    let held: LogLine[] | null = ended.size ? [] : null;
    const print = (l: LogLine) => {
      if (out.json) return;
      const err = l.stream === 'stderr';
      (err ? stderr : process.stdout).write(`${prefix(job.name, l.timestamp)} ${visible(l.line, out.config.color[err ? 'stderr' : 'stdout'])}\n`);
    };
    const released = held
      ? Promise.all(ended).then(() => {
          for (const l of held!) print(l);
          held = null;
        })
      : undefined;
    const stream = followLogs(client, {
      executionId: id,
      onLine: (l: LogLine) => (held ? held.push(l) : print(l)),
      // a job queued with no worker to take it says why, as `hodei run` does
      onWaiting: (reason) => {
        if (!out.json) out.note(`${out.err('gray', clock(new Date()))} ${job.name.padEnd(width.name)}  ${out.err('yellow', `waiting: ${reason}`)}`);
      },
    })
      .then(() => released)
      .then(
        () => undefined,
        (err: Error) => {
          if (!out.json) out.note(out.err('yellow', `[${job.name}] logs unavailable: ${err.message}`));
        },
      );
    followed.set(id, stream);
    logs.push(stream);
  };
  const onJob = (job: RunJob, at: string) => {
    // a job starting says so again when it comes to wait for worker-manager (its message says why)
    const key = `${job.status}|${job.execution_id ?? ''}|${job.status === 'starting' ? (job.message ?? '') : ''}`;
    if (shown.get(job.job_id) !== key) {
      shown.set(job.job_id, key);
      if (!out.json) {
        width.name = Math.max(width.name, job.name.length);
        const extra =
          job.status === 'failed' || job.status === 'completed'
            ? job.exit_code !== null && job.exit_code !== undefined
              ? ` (exit ${job.exit_code})`
              : job.message
                ? ` (${job.message})`
                : ''
            : job.status === 'skipped' && job.message
              ? ` (${job.message.replace(/^skipped: /, '')})`
              : job.status === 'starting' && job.message
                ? ` (${job.message})`
                : '';
        out.note(`${out.err('gray', clock(at))} ${job.name.padEnd(width.name)}  ${statusText(out.err, job.status)}${extra}`);
      }
    }
    // a job that ended before we saw it run still has its lines replayed
    if (job.execution_id) {
      followExecution(job);
      if (ENDED.has(job.status)) ended.add(followed.get(job.execution_id)!);
    }
  };

  // an outage is over once a connection delivers (an event, or the stream's keep-alive); said on
  // stderr once each, also with --json, as logs -f and run say theirs
  const outage = new Outage();
  const down = (reason: string) => {
    if (!outage.active) out.note(out.err('yellow', `${reason}; retrying…`));
    return outage.failed();
  };
  const delivering = () => {
    if (!outage.active) return;
    outage.over();
    out.note(out.err('yellow', "the run's event stream is back"));
  };
  const path = `/api/v1/pipeline-runs/${runId}/events/stream`;
  // a reconnect resumes after the last event seen: the jobs changed since, not a whole snapshot again
  let lastId: string | undefined;
  for (;;) {
    let res: Response;
    try {
      const headers: Record<string, string> = { accept: 'text/event-stream', ...(lastId === undefined ? {} : { 'last-event-id': lastId }) };
      res = await client.fetch('orchestrator', 'GET', path, { headers, timeoutMs: null });
      if (!res.ok) throw await client.errorOf('orchestrator', 'GET', path, res);
    } catch (err) {
      // also on the first connection: an orchestrator away when the follow starts is waited out, as logs -f does
      if (!isOutage(err) || !down(err.message)) throw err;
      await outage.backOff();
      continue;
    }
    if (!res.body) throw new CliError(`the orchestrator answered ${res.status} to the run's event stream, without a body`);
    try {
      for await (const ev of readSse(res.body, delivering)) {
        lastId = ev.id || lastId;
        const now = new Date().toISOString();
        if (ev.event === 'snapshot' || ev.event === 'completed') {
          const run = parse(PipelineRun, ev.data);
          if (!run) throw new CliError(`unexpected ${ev.event} event on the run's event stream`);
          width.name = Math.max(width.name, ...run.jobs.map((j) => j.name.length));
          // the jobs that ended first: their lines come before those of the jobs that waited for them
          for (const j of [...run.jobs].sort((a, b) => Number(ENDED.has(b.status)) - Number(ENDED.has(a.status)))) onJob(j, now);
          if (ev.event === 'completed') {
            await Promise.all(logs);
            return run;
          }
        } else if (ev.event === 'job') {
          const job = parse(RunJob, ev.data);
          if (job) onJob(job, now);
        }
      }
    } catch (err) {
      if (err instanceof CliError || isAbort(err)) throw err;
    }
    if (!down("the run's event stream broke")) throw new UnreachableError('orchestrator', client.config.urls.orchestrator, "the run's event stream kept breaking");
    await outage.backOff();
  }
}

/** The end of a followed run: one line per job on stderr. */
export function printRunSummary(c: Ctx, run: PipelineRun): void {
  const { out } = c;
  out.note(out.err('gray', '─'.repeat(40)));
  const w = Math.max(...run.jobs.map((j) => j.name.length), 3);
  const sw = Math.max(...run.jobs.map((j) => j.status.length));
  for (const j of run.jobs) {
    const exit = j.exit_code !== null && j.exit_code !== undefined ? `  exit ${j.exit_code}` : '';
    const took = j.duration_ms !== null && j.duration_ms !== undefined ? `  ${j.duration_ms}ms` : '';
    const status = statusText(out.err, j.status) + (exit || took ? ' '.repeat(sw - j.status.length) : '');
    out.note(`${j.name.padEnd(w)}  ${status}${exit}${took}`);
  }
  out.note(`run ${run.id} ${statusText(out.err, run.status)}`);
}

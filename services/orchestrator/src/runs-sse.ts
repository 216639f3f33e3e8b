// Server-Sent Events of pipeline runs. One run: a snapshot, then a `job` event each time one of its
// jobs changes (read back from Postgres whenever the run's NATS subject says something changed, so
// events come in order with no gap), then `completed` with the final run and the end of the
// stream. The events of one read share an id, written on the last of them (a client cut off
// within them resumes from the read before); a client reconnecting with Last-Event-ID gets no
// snapshot, only the jobs changed since. Every run: the `PipelineRunEvent`s of `<p>.job.run.*` as
// they are published.
import { DeliverPolicy } from '@nats-io/jetstream';
import type { Request, Response } from 'express';
import { decodeJson, SseConnection, type Bus, type Logger, type Pool } from '@hodei/platform';
import type { PipelineRunJob } from '@hodei/types';
import * as runs from './store/runs.js';

/** A safety net for a change notice lost on the way (a NATS reconnect): read the run again this often. */
const REFRESH_MS = 5_000;

const jobKey = (j: PipelineRunJob) => `${j.status}|${j.execution_id ?? ''}`;

/** A read of the run and the event id of that read (store/runs.ts getRunForEvents). */
export type RunRead = NonNullable<Awaited<ReturnType<typeof runs.getRunForEvents>>>;

/**
 * Streams one run until it ends; `first` is the run as read before the response started. `resume`:
 * for a client that reconnected, the jobs changed since the last event it saw (read after `first`).
 */
export function streamRun(req: Request, res: Response, deps: { db: Pool; bus: Bus; logger: Logger }, first: RunRead, resume: Set<string> | null): void {
  const sse = new SseConnection(req, res);
  // subscribe before the snapshot is read again, so no change falls between the two
  const sub = deps.bus.nc.subscribe(deps.bus.subjects.pipelineRun(first.run.id));
  sse.onClose(() => sub.unsubscribe());
  const sent = new Map<string, string>();
  let busy = false;
  let dirty = false;

  const emit = ({ run, eventId }: RunRead, initial: boolean): void => {
    const events: Array<[string, unknown]> = [];
    if (initial && !resume) events.push(['snapshot', run]);
    for (const j of run.jobs) {
      const key = jobKey(j);
      if (sent.get(j.job_id) === key) continue;
      sent.set(j.job_id, key);
      if (!initial || resume?.has(j.job_id)) events.push(['job', { run_id: run.id, ...j }]);
    }
    const ended = run.status !== 'running';
    if (ended) events.push(['completed', run]);
    events.forEach(([event, data], i) => sse.event(event, data, i === events.length - 1 ? eventId : undefined));
    if (ended) sse.end();
  };

  const refresh = async (): Promise<void> => {
    if (busy) {
      dirty = true;
      return;
    }
    busy = true;
    try {
      do {
        dirty = false;
        const read = await runs.getRunForEvents(deps.db, first.run.id);
        if (!read) {
          sse.event('error', { detail: `pipeline run ${first.run.id} was deleted` });
          sse.end();
          return;
        }
        if (!sse.closed) emit(read, false);
      } while (dirty && !sse.closed);
    } catch (err) {
      deps.logger.warn({ err, run_id: first.run.id }, 'reading a pipeline run for its event stream failed');
    } finally {
      busy = false;
    }
  };

  emit(first, true);
  if (sse.closed) return;
  void (async () => {
    for await (const _ of sub) {
      if (sse.closed) break;
      void refresh();
    }
  })();
  const refreshTimer = setInterval(() => void refresh(), REFRESH_MS);
  refreshTimer.unref();
  sse.onClose(() => clearInterval(refreshTimer));
  void refresh(); // anything that changed between the first read and the subscription
}

/**
 * Streams every run's events (dashboards) until the client goes away, each with its sequence in
 * the events stream as id; `after`: a reconnecting client's Last-Event-ID, the stream goes on from
 * the event after it (as long as the events stream still holds it).
 */
export async function streamAllRuns(req: Request, res: Response, deps: { bus: Bus; logger: Logger }, after: number | undefined): Promise<void> {
  const { subjects } = deps.bus;
  const consumer = await deps.bus.js.consumers.get(subjects.eventsStream, {
    filter_subjects: subjects.pipelineRunAll,
    ...(after === undefined ? { deliver_policy: DeliverPolicy.New } : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: after + 1 }),
  });
  const messages = await consumer.consume();
  const sse = new SseConnection(req, res);
  // an ordered consumer left alone lingers on the server for 5 minutes: one per dashboard reconnect
  sse.onClose(() => void messages.close().then(() => consumer.delete()).catch(() => undefined));
  sse.event('connected', { subject: subjects.pipelineRunAll });
  void (async () => {
    for await (const m of messages) {
      if (sse.closed) break;
      try {
        sse.event('run_event', decodeJson(m.data), m.seq);
      } catch (err) {
        deps.logger.warn({ err, subject: m.subject }, 'ignoring a pipeline run event that is not JSON');
      }
    }
  })().catch((err: unknown) => {
    deps.logger.warn({ err }, 'the pipeline run events stopped');
    sse.end();
  });
}

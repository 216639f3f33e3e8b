// Schedules: create (core alias /schedule), list (core alias /scheduled), read, pause/resume, delete, firings.
import { BadRequestError, NotFoundError, sendCreated, sendList, ServiceClient, type Api } from '@hodei/platform';
import { IdParams, Paging, Schedule, ScheduleCreate, ScheduleListQuery, SchedulePatch, ScheduleRun, z } from '@hodei/types';
import { canonicalTimezone, firstCronRun } from '../cron.js';
import type { ScheduleStore, ScheduleValues } from '../store/schedules.js';

const TAG = 'schedules';

/** Checks with the orchestrator that the job (or pipeline) a schedule runs exists. */
async function assertTargetExists(orchestrator: ServiceClient, v: { job_id: string | null; pipeline_id: string | null }): Promise<void> {
  if (v.job_id !== null) {
    const job = await orchestrator.find(`/api/v1/jobs/${v.job_id}`);
    if (!job) throw new NotFoundError('job', v.job_id, 'job_id');
  }
  if (v.pipeline_id !== null) {
    const p = await orchestrator.find(`/api/v1/pipelines/${v.pipeline_id}`);
    if (!p) throw new NotFoundError('pipeline', v.pipeline_id, 'pipeline_id');
  }
}

/** Validates cron/run_at/timezone and returns when the schedule fires next (null when paused or done). */
function computeNext(v: ScheduleValues & { completed?: boolean }, now = new Date()): Date | null {
  if (v.cron !== null) {
    const next = firstCronRun(v.cron, v.timezone, now);
    return v.enabled && !v.completed ? next : null;
  }
  return v.enabled && !v.completed ? v.run_at : null;
}

function assertFuture(runAt: Date, now = new Date()): void {
  if (runAt.getTime() <= now.getTime())
    throw new BadRequestError('run_at is in the past', [{ path: 'run_at', message: `${runAt.toISOString()} is in the past` }]);
}

/** Fires a schedule now; the id of the firing it recorded. */
export type RunNow = (s: { id: string; job_id: string | null; pipeline_id: string | null; overlap_policy: Schedule['overlap_policy'] }) => Promise<string>;

export function registerScheduleRoutes(api: Api, store: ScheduleStore, orchestrator: ServiceClient, onChange: () => void, runNow: RunNow): void {
  const create = async (body: z.output<typeof ScheduleCreate>) => {
    const v: ScheduleValues = {
      name: body.name ?? null,
      job_id: body.job_id ?? null,
      pipeline_id: body.pipeline_id ?? null,
      cron: body.cron ?? null,
      run_at: body.run_at ? new Date(body.run_at) : null,
      // a run_at schedule keeps its zone too, for a later PATCH to cron
      timezone: canonicalTimezone(body.timezone),
      enabled: body.enabled,
      overlap_policy: body.overlap_policy,
      misfire_policy: body.misfire_policy,
      next_run_at: null,
    };
    if (v.run_at) assertFuture(v.run_at);
    v.next_run_at = computeNext(v);
    await assertTargetExists(orchestrator, v);
    const s = await store.create(v);
    onChange();
    return s;
  };

  for (const path of ['/api/v1/schedules', '/api/v1/schedule']) {
    api.route(
      {
        method: 'post',
        path,
        tag: TAG,
        summary: path.endsWith('schedule') ? 'Schedule a job (core alias of POST /api/v1/schedules)' : 'Schedule a job or pipeline (cron or one-shot run_at)',
        body: ScheduleCreate,
        responses: {
          201: { description: 'created', schema: Schedule },
          404: { description: 'job_id or pipeline_id names no job or pipeline' },
          503: { description: 'orchestrator unreachable' },
        },
      },
      async ({ body }, _req, res) => {
        const s = await create(body);
        sendCreated(res, `/api/v1/schedules/${s.id}`, s);
      },
    );
  }

  for (const path of ['/api/v1/schedules', '/api/v1/scheduled']) {
    api.route(
      {
        method: 'get',
        path,
        tag: TAG,
        summary: path.endsWith('scheduled') ? 'List schedules (core alias of GET /api/v1/schedules)' : 'List schedules, newest first',
        query: ScheduleListQuery,
        responses: { 200: { description: 'schedules', schema: z.array(Schedule) } },
      },
      async ({ query }, _req, res) => {
        const { items, total } = await store.list(query);
        sendList(res, items, total);
      },
    );
  }

  api.route(
    {
      method: 'get',
      path: '/api/v1/schedules/:id',
      tag: TAG,
      summary: 'Read a schedule',
      params: IdParams,
      responses: { 200: { description: 'the schedule', schema: Schedule }, 404: { description: 'no such schedule' } },
    },
    async ({ params }, _req, res) => {
      const s = await store.get(params.id);
      if (!s) throw new NotFoundError('schedule', params.id);
      res.json(s);
    },
  );

  api.route(
    {
      method: 'patch',
      path: '/api/v1/schedules/:id',
      tag: TAG,
      summary: 'Change a schedule; `enabled:false` pauses it, `enabled:true` resumes it',
      params: IdParams,
      body: SchedulePatch,
      responses: { 200: { description: 'the schedule', schema: Schedule }, 404: { description: 'no such schedule' } },
    },
    async ({ params, body }, _req, res) => {
      const s = await store.edit(params.id, (cur) => {
        const next = { ...cur };
        if (body.name !== undefined) next.name = body.name;
        if (body.timezone !== undefined) next.timezone = canonicalTimezone(body.timezone);
        if (body.enabled !== undefined) next.enabled = body.enabled;
        if (body.overlap_policy !== undefined) next.overlap_policy = body.overlap_policy;
        if (body.misfire_policy !== undefined) next.misfire_policy = body.misfire_policy;
        if (body.cron !== undefined) {
          next.cron = body.cron;
          next.run_at = null;
          next.completed = false;
        }
        if (body.run_at !== undefined) {
          next.run_at = new Date(body.run_at);
          next.cron = null;
          next.completed = false;
          assertFuture(next.run_at);
        }
        next.next_run_at = computeNext(next);
        return next;
      });
      if (!s) throw new NotFoundError('schedule', params.id);
      onChange();
      res.json(s);
    },
  );

  api.route(
    {
      method: 'delete',
      path: '/api/v1/schedules/:id',
      tag: TAG,
      summary: 'Delete a schedule and its firing history',
      params: IdParams,
      responses: { 204: { description: 'deleted' }, 404: { description: 'no such schedule' } },
    },
    async ({ params }, _req, res) => {
      if (!(await store.delete(params.id))) throw new NotFoundError('schedule', params.id);
      onChange();
      res.status(204).end();
    },
  );

  api.route(
    {
      method: 'post',
      path: '/api/v1/schedules/:id/run',
      tag: TAG,
      summary: 'Fire a schedule now, paused or completed too, under its overlap_policy; its next_run_at stays',
      params: IdParams,
      responses: {
        202: { description: 'the firing: fired (its execution_id or pipeline_run_id), skipped or failed, and why', schema: ScheduleRun },
        404: { description: 'no such schedule' },
      },
    },
    async ({ params }, _req, res) => {
      const s = await store.values(params.id);
      if (!s) throw new NotFoundError('schedule', params.id);
      const runId = await runNow({ id: params.id, job_id: s.job_id, pipeline_id: s.pipeline_id, overlap_policy: s.overlap_policy });
      res.status(202).json(await store.run(runId));
    },
  );

  api.route(
    {
      method: 'get',
      path: '/api/v1/schedules/:id/runs',
      tag: TAG,
      summary: 'Every firing of a schedule, newest first',
      params: IdParams,
      query: Paging,
      responses: { 200: { description: 'firings', schema: z.array(ScheduleRun) }, 404: { description: 'no such schedule' } },
    },
    async ({ params, query }, _req, res) => {
      if (!(await store.get(params.id))) throw new NotFoundError('schedule', params.id);
      const { items, total } = await store.runs(params.id, query.limit, query.offset);
      sendList(res, items, total);
    },
  );
}

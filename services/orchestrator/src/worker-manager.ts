// What the orchestrator asks worker-manager: a job's live executions, cancelling them, the size of
// its tables, and deleting the executions and logs of cleaned-up jobs.
import { BadGatewayError, eachLimited, HttpError, ServiceClient, type Logger } from '@hodei/platform';
import type { Execution, ExecutionCleanupCounts } from '@hodei/types';

/** Executions of one status a job cancel reads at a time. */
const ACTIVE_PAGE = 1000;
/** Cancels a job cancel has worker-manager work on at once. */
const CANCEL_CONCURRENCY = 16;

/** How long a cleanup waits for worker-manager to delete the executions and logs. */
export const CLEANUP_TIMEOUT_MS = 10 * 60_000;

export class WorkerManagerClient {
  private readonly client: ServiceClient;
  private readonly quick: ServiceClient;
  private readonly slow: ServiceClient;

  constructor(baseUrl: string, token: string | undefined, private readonly logger: Logger) {
    this.client = new ServiceClient(baseUrl, token, 10_000);
    // stats must answer even when worker-manager hangs
    this.quick = new ServiceClient(baseUrl, token, 2_000);
    // deleting jobs with millions of log lines takes worker-manager tens of seconds
    this.slow = new ServiceClient(baseUrl, token, CLEANUP_TIMEOUT_MS);
  }

  /**
   * Cancels every queued and running execution of the job, however many (a page of each status at a
   * time, until a page holds none not asked already), CANCEL_CONCURRENCY at once; how many this
   * cancelled, by the status each was listed in. One by one, 1,500 queued took 16.6 s (a queued one
   * waits for a worker's answer).
   */
  async cancelActive(jobId: string): Promise<{ queued: number; running: number }> {
    const asked = new Set<string>();
    const cancelled = { queued: 0, running: 0 };
    for (;;) {
      const found: { id: string; status: 'queued' | 'running' }[] = [];
      for (const status of ['queued', 'running'] as const) {
        const page = await this.upstream(() =>
          this.client.find<Execution[]>(`/api/v1/executions?job_id=${encodeURIComponent(jobId)}&status=${status}&limit=${ACTIVE_PAGE}`),
        );
        if (!Array.isArray(page)) throw new BadGatewayError('worker-manager answered executions with something that is not a list');
        for (const e of page) if (!asked.has(e.id)) found.push({ id: e.id, status });
      }
      if (found.length === 0) return cancelled;
      for (const { id } of found) asked.add(id);
      await eachLimited(found, CANCEL_CONCURRENCY, async ({ id, status }) => {
        if (await this.cancel(id)) cancelled[status] += 1;
      });
    }
  }

  /** The job's newest execution, or null when it never ran. */
  async lastExecution(jobId: string): Promise<Execution | null> {
    const page = await this.upstream(() => this.client.find<Execution[]>(`/api/v1/executions?job_id=${encodeURIComponent(jobId)}&limit=1`));
    if (!Array.isArray(page)) throw new BadGatewayError('worker-manager answered executions with something that is not a list');
    return page[0] ?? null;
  }

  /** Queues an execution of the job (worker-manager reads its definition from us); returns its id. */
  async execute(jobId: string, env?: Record<string, string>): Promise<string> {
    const r = await this.client.send<{ id?: unknown }>('POST', '/api/v1/execute', env ? { job_id: jobId, env } : { job_id: jobId });
    if (typeof r?.id !== 'string') throw new BadGatewayError('worker-manager answered execute without an execution id');
    return r.id;
  }

  /** The job's newest execution whose environment has `name=value` (a pipeline run's start that was never recorded). */
  async findExecutionWithEnv(jobId: string, name: string, value: string): Promise<string | null> {
    const page = await this.upstream(() => this.client.find<Execution[]>(`/api/v1/executions?job_id=${encodeURIComponent(jobId)}&limit=1000`));
    if (!Array.isArray(page)) throw new BadGatewayError('worker-manager answered executions with something that is not a list');
    return page.find((e) => e.spec?.env?.[name] === value)?.id ?? null;
  }

  /** Asks for a cancel; `false` when the execution already ended or is gone (409/404). */
  async cancel(executionId: string): Promise<boolean> {
    try {
      await this.client.send('POST', `/api/v1/executions/${encodeURIComponent(executionId)}/cancel`);
      return true;
    } catch (err) {
      if (err instanceof HttpError && (err.status === 409 || err.status === 404)) return false;
      throw err;
    }
  }

  /** Rows and bytes of worker-manager's executions and logs; null when it does not answer. */
  async storage(): Promise<Record<string, { rows: number; bytes: number }> | null> {
    try {
      const s = await this.quick.find<Record<string, { rows?: unknown; bytes?: unknown }>>('/api/v1/storage');
      if (!s || typeof s !== 'object') return null;
      const out: Record<string, { rows: number; bytes: number }> = {};
      for (const key of ['executions', 'logs']) {
        const v = s[key];
        if (v && typeof v.rows === 'number' && typeof v.bytes === 'number') out[key] = { rows: v.rows, bytes: v.bytes };
      }
      return out;
    } catch (err) {
      this.logger.warn({ err }, 'worker-manager storage unavailable');
      return null;
    }
  }

  /** Deletes the executions and logs of `jobIds`, and those over before `finishedBefore` but
   *  each job's newest (with `dryRun`, only counts them); returns how many executions went. */
  async cleanup(jobIds: string[], finishedBefore: Date, dryRun: boolean): Promise<ExecutionCleanupCounts> {
    const body = { job_ids: jobIds, finished_before: finishedBefore.toISOString(), dry_run: dryRun };
    const r = await this.upstream(() => this.slow.send<Partial<Record<keyof ExecutionCleanupCounts, unknown>>>('POST', '/api/v1/executions/cleanup', body));
    const count = (v: unknown) => (typeof v === 'number' ? v : 0);
    return { executions: count(r?.executions), older_executions: count(r?.older_executions), adhoc_executions: count(r?.adhoc_executions) };
  }

  /** A 4xx from worker-manager is its problem with our request, not the user's: answer 502. */
  private async upstream<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      if (err instanceof HttpError && err.status < 500) throw new BadGatewayError(`worker-manager answered ${err.status}: ${err.message}`);
      throw err;
    }
  }
}

// What the orchestrator asks the scheduler: the jobs its schedules run, which cleanup keeps.
import { BadGatewayError, HttpError, ServiceClient, ServiceUnavailableError } from '@hodei/platform';
import type { Schedule } from '@hodei/types';

const PAGE = 1000;

export class SchedulerClient {
  private readonly client: ServiceClient;

  constructor(baseUrl: string, token: string | undefined) {
    this.client = new ServiceClient(baseUrl, token, 10_000);
  }

  /** The jobs of the schedules that may still fire (scheduled or paused; not a completed one-shot). */
  async scheduledJobs(): Promise<string[]> {
    const jobs = new Set<string>();
    for (let offset = 0; ; offset += PAGE) {
      let page: Schedule[] | null;
      try {
        page = await this.client.find<Schedule[]>(`/api/v1/schedules?limit=${PAGE}&offset=${offset}`);
      } catch (err) {
        // a 4xx is the scheduler's problem with our request, not the user's
        if (err instanceof HttpError && err.status < 500) throw new BadGatewayError(`the scheduler answered ${err.status}: ${err.message}`);
        if (err instanceof ServiceUnavailableError) throw new ServiceUnavailableError(`the scheduler (asked which jobs its schedules run) is unavailable: ${err.message}; nothing was deleted`);
        throw err;
      }
      if (!Array.isArray(page)) throw new BadGatewayError('the scheduler answered schedules with something that is not a list');
      for (const s of page) if (s.job_id && s.status !== 'completed') jobs.add(s.job_id);
      if (page.length < PAGE) return [...jobs];
    }
  }
}

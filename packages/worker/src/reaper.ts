// Kills what is left of executions: SIGTERM to the process group and to every process carrying the
// execution's HODEI_EXECUTION_ID, then SIGKILL after the grace period to whatever remains.
// Clean-ups after a normal exit are coalesced, so one /proc scan serves every execution that
// ended in the same turn of the event loop.
import type { Logger } from '@hodei/platform';
import { findExecutionProcesses, signalGroup, signalPids } from './procs.js';

export class Reaper {
  private queued = new Map<string, number | undefined>();
  private scanScheduled = false;
  private kills = new Map<NodeJS.Timeout, () => void>();

  constructor(
    private readonly graceMs: number,
    private readonly logger: Logger,
  ) {}

  /** Cancel / timeout: SIGTERM everything of the execution now (synchronously), SIGKILL later. */
  terminate(executionId: string, pgid: number | undefined): void {
    signalGroup(pgid, 'SIGTERM');
    const pids = findExecutionProcesses([executionId]).get(executionId) ?? [];
    signalPids(pids, 'SIGTERM');
    this.scheduleKill(executionId, pgid);
  }

  /** After the main process exited: whatever it left behind goes too. */
  cleanup(executionId: string, pgid: number | undefined): void {
    this.queued.set(executionId, pgid);
    if (this.scanScheduled) return;
    this.scanScheduled = true;
    setImmediate(() => this.scanQueued());
  }

  private scanQueued(): void {
    this.scanScheduled = false;
    const batch = this.queued;
    this.queued = new Map();
    const found = findExecutionProcesses(batch.keys());
    for (const [executionId, pgid] of batch) {
      const group = signalGroup(pgid, 'SIGTERM');
      const pids = found.get(executionId) ?? [];
      if (!group && pids.length === 0) continue;
      this.logger.info({ execution_id: executionId, leftover_pids: pids }, 'terminating processes the job left behind');
      signalPids(pids, 'SIGTERM');
      this.scheduleKill(executionId, pgid);
    }
  }

  private scheduleKill(executionId: string, pgid: number | undefined): void {
    const kill = () => {
      this.kills.delete(timer);
      signalGroup(pgid, 'SIGKILL');
      const pids = findExecutionProcesses([executionId]).get(executionId) ?? [];
      if (pids.length > 0) this.logger.warn({ execution_id: executionId, pids }, 'SIGKILL to processes that ignored SIGTERM');
      signalPids(pids, 'SIGKILL');
    };
    const timer = setTimeout(kill, this.graceMs);
    this.kills.set(timer, kill);
  }

  /** Worker exit: do the pending SIGKILLs now rather than leave processes behind. */
  killPendingNow(): void {
    for (const [timer, kill] of this.kills) {
      clearTimeout(timer);
      kill();
    }
  }
}

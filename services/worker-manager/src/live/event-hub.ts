// In-process fan-out of execution status changes and progress to the events SSE streams.
import type { ExecutionEventData, Progress } from '@hodei/types';

export type LiveEvent =
  | { kind: 'status'; data: ExecutionEventData; final: boolean }
  | { kind: 'progress'; execution_id: string; progress: Progress };

type Listener = (e: LiveEvent) => void;

export class EventHub {
  private readonly byExecution = new Map<string, Set<Listener>>();
  private readonly all = new Set<Listener>();

  /** Listens to one execution (`id`) or to all of them (`null`); returns the unsubscribe function. */
  on(executionId: string | null, fn: Listener): () => void {
    if (executionId === null) {
      this.all.add(fn);
      return () => this.all.delete(fn);
    }
    let set = this.byExecution.get(executionId);
    if (!set) this.byExecution.set(executionId, (set = new Set()));
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0 && this.byExecution.get(executionId) === set) this.byExecution.delete(executionId);
    };
  }

  emit(e: LiveEvent): void {
    const id = e.kind === 'status' ? e.data.execution_id : e.execution_id;
    for (const fn of this.byExecution.get(id) ?? []) fn(e);
    if (e.kind === 'status') for (const fn of this.all) fn(e);
  }
}

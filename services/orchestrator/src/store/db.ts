import type { Pool, PoolClient } from '@hodei/platform';
import { FINAL_STATUSES } from '@hodei/types';

/** A pool or a client inside a transaction: store functions take either. */
export type Db = Pool | PoolClient;

/** `status IN` these: an execution that has not ended. */
export const ACTIVE_EXECUTION = "('queued', 'running')";
/** `status IN` these: an execution that has ended (a job: its newest has). */
export const FINAL_EXECUTION = `(${FINAL_STATUSES.map((s) => `'${s}'`).join(', ')})`;
/** `status IN` these: a job a pipeline run has yet to finish (it waits for it, starts it, or runs it). */
export const UNFINISHED_RUN_JOB = "('waiting', 'starting', 'queued', 'running')";

/** `WHERE` clauses built from fixed SQL fragments with numbered parameters. */
export class Where {
  readonly clauses: string[] = [];
  readonly values: unknown[] = [];

  add(sql: (param: string) => string, value: unknown): this {
    this.values.push(value);
    this.clauses.push(sql(`$${this.values.length}`));
    return this;
  }

  param(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }

  toString(): string {
    return this.clauses.length ? `WHERE ${this.clauses.join(' AND ')}` : '';
  }
}

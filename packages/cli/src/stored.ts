// An ended execution's log as the worker-manager stored it, a page at a time.
import { LogsResponse, type LogLine } from '@hodei/types';
import { CliError } from './errors.js';
import type { HodeiClient } from './http.js';
import { untilAnswered } from './outage.js';

const PAGE = 5000;
/** How long the store may go without another line before hodei stops waiting for the rest. */
const STORE_WAIT_MS = 30_000;

/**
 * Lines 1..lastSeq of an execution whose log stream has completed. A line reaches the stream
 * before its batch is stored: the last ones may need a moment to be there.
 */
export async function* storedLines(client: HodeiClient, executionId: string, lastSeq: number, onDown: (reason: string) => void): AsyncGenerator<LogLine[]> {
  const path = `/api/v1/executions/${executionId}/logs`;
  let since = 0;
  let progressAt = Date.now();
  while (since < lastSeq) {
    const { lines } = await untilAnswered(() => client.get('worker-manager', path, LogsResponse, { since_seq: since, limit: PAGE }), onDown);
    const page = lines.filter((l) => l.seq <= lastSeq);
    if (page.length > 0) {
      since = page[page.length - 1]!.seq;
      progressAt = Date.now();
      yield page;
    } else if (Date.now() - progressAt > STORE_WAIT_MS) {
      throw new CliError(`the worker-manager stored ${since} of the ${lastSeq} lines of execution ${executionId}, and no more in ${STORE_WAIT_MS / 1000}s: try hodei logs ${executionId}`);
    } else await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// A job's result (up to 1 MiB of JSON) that does not fit in one NATS message with its final status
// goes ahead of the status in parts, stored in the events stream on `<p>.execution.<id>.result.<n>`;
// the final status then carries `result_parts` instead of `result`. worker-manager reads the parts
// back when it records the status, and removes them once the result is stored.
import type { JetStreamManager } from '@nats-io/jetstream';
import type { Subjects } from '@hodei/types';

/** Room left in a message for its headers (message id, trace context). */
export const MESSAGE_HEADROOM = 4096;

/**
 * The size of one part: half of what a message may carry, because a part is read back through the
 * stream's get API, whose answer holds the part in base64 (4/3 of its size) inside JSON.
 */
export function resultPartBytes(maxPayload: number): number {
  return Math.floor((maxPayload - MESSAGE_HEADROOM) / 2);
}

/** The result's JSON cut into parts of at most `partBytes` (a cut may fall inside a character). */
export function splitResult(json: Uint8Array, partBytes: number): Uint8Array[] {
  const parts: Uint8Array[] = [];
  for (let at = 0; at < json.length; at += partBytes) parts.push(json.subarray(at, at + partBytes));
  return parts;
}

/** The result put back together from its `count` parts, or why it could not be. */
export async function readResultParts(
  jsm: JetStreamManager,
  subjects: Subjects,
  executionId: string,
  count: number,
): Promise<{ result?: unknown; result_error?: string }> {
  const parts: Uint8Array[] = [];
  for (let n = 0; n < count; n++) {
    const msg = await jsm.streams.getMessage(subjects.eventsStream, { last_by_subj: subjects.executionResultPart(executionId, n) });
    if (!msg) return { result_error: `part ${n + 1} of ${count} of the result is missing from the ${subjects.eventsStream} stream` };
    parts.push(msg.data);
  }
  const text = Buffer.concat(parts).toString('utf8');
  try {
    return { result: JSON.parse(text) as unknown };
  } catch (err) {
    return { result_error: `the result's ${count} parts do not make valid JSON: ${(err as Error).message}` };
  }
}

/** Removes the parts of an execution's result from the stream (once it is stored). */
export async function dropResultParts(jsm: JetStreamManager, subjects: Subjects, executionId: string): Promise<void> {
  await jsm.streams.purge(subjects.eventsStream, { filter: subjects.executionResultParts(executionId) });
}

// An execution's definition (command, script, args, env) travels whole in NATS messages: the queued
// event and the worker's assignment. One over the server's `max_payload` could be stored but never
// run, so it is refused when it is given.
import { PayloadTooLargeError } from './errors.js';
import { MESSAGE_HEADROOM } from './result-parts.js';

export interface Definition {
  command?: string | null;
  script?: string | null;
  args?: string[];
  env?: Record<string, string>;
}

const jsonBytes = (value: unknown): number => Buffer.byteLength(JSON.stringify(value ?? null));

/** Throws a 413 naming the largest part when `definition` (with the other fields it holds) cannot fit in one message; `owner` says whose it is. */
export function checkDefinitionFits(maxPayload: number | undefined, definition: Definition, owner = "the execution's definition"): void {
  if (maxPayload === undefined) return;
  const room = maxPayload - MESSAGE_HEADROOM;
  const bytes = jsonBytes(definition);
  if (bytes <= room) return;
  const parts: Array<[string, number]> = Object.entries(definition).map(([k, v]) => [k, jsonBytes(v)]);
  const largest = parts.sort((a, b) => b[1] - a[1])[0]![0];
  throw new PayloadTooLargeError(
    `${owner} is ${bytes} bytes as JSON, most of it in ${largest}; NATS carries at most ${room} ` +
      `(its max_payload ${maxPayload}, less ${MESSAGE_HEADROOM} for headers): shorten ${largest}, or raise max_payload in nats-server's configuration`,
  );
}

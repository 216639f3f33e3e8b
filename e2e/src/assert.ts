// Shared expectations: the fields API.md promises, and the shape of a problem+json error.
import { expect } from 'vitest';
import type { Reply } from './http.js';

const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function expectFields(obj: Record<string, unknown>, fields: string[], what: string): void {
  const missing = fields.filter((f) => !(f in obj));
  expect(missing, `${what} lacks ${missing.join(', ')}: ${JSON.stringify(obj)}`).toEqual([]);
}

export const expectIso = (v: unknown, what: string) => expect(v, `${what} = ${String(v)}`).toMatch(ISO_MS);
export const expectUuid = (v: unknown, what: string) => expect(v, `${what} = ${String(v)}`).toMatch(UUID);

/** A 4xx answered in RFC 9457 problem+json, without a stack trace or SQL in it. */
export function expectProblem(res: Reply, status: number | number[], what: string): void {
  const allowed = Array.isArray(status) ? status : [status];
  expect(allowed, `${what}: status ${res.status}, body ${res.text.slice(0, 300)}`).toContain(res.status);
  expect(res.headers.get('content-type') ?? '', `${what}: content type`).toMatch(/^application\/problem\+json/);
  expect(res.body.status, `${what}: problem status`).toBe(res.status);
  expect(typeof res.body.title, `${what}: problem title`).toBe('string');
  expect(res.text, `${what}: leaks internals`).not.toMatch(/\n\s+at |node_modules|SELECT |INSERT |syntax error at/);
}

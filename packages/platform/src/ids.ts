import { v7 } from 'uuid';

/** Time-ordered UUIDv7: ids sort by creation, which keeps indexes and "newest first" cheap. */
export const newId = (): string => v7();

/** A timestamp as the API shows it: ISO-8601 UTC with milliseconds; null stays null. */
export function iso(d: Date | string | null | undefined): string | null {
  if (d === null || d === undefined) return null;
  return (d instanceof Date ? d : new Date(d)).toISOString();
}

import { v7 } from 'uuid';

/** Time-ordered UUIDv7: ids sort by creation, which keeps indexes and "newest first" cheap. */
export const newId = (): string => v7();

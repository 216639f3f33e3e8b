// Work on many items, a bounded number at a time (requests to another service, each of which waits).
/** Calls `fn` on every item, `limit` at a time; once all are done, rejects with the first error if any. */
export async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  const worker = async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) await fn(item);
  };
  const results = await Promise.allSettled(Array.from({ length: Math.min(limit, queue.length) }, worker));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

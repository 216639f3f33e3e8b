// Many small writes as one: what is added during one turn of the event loop goes to the database
// in one statement. One flush runs at a time; what arrives meanwhile waits for the next, so a
// backlog makes the batches larger rather than the round trips more. When a batch fails, its items
// are tried one by one, so each caller gets its own item's outcome.

export class Batcher<T, R = void> {
  private items: T[] = [];
  private waiters: Array<{ resolve: (r: R) => void; reject: (e: unknown) => void }> = [];
  private flushing = false;
  private scheduled = false;

  /** `flush` gets the items in the order they were added and answers one result per item
   *  (or nothing, when the callers wait only for the write). */
  constructor(
    private readonly flush: (items: T[]) => Promise<R[] | void>,
    private readonly maxItems = 500,
  ) {}

  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.items.push(item);
      this.waiters.push({ resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.flushing || this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.run();
    });
  }

  private async run(): Promise<void> {
    if (this.flushing || this.items.length === 0) return;
    this.flushing = true;
    const items = this.items.splice(0, this.maxItems);
    const waiters = this.waiters.splice(0, items.length);
    try {
      const results = await this.flush(items);
      waiters.forEach((w, i) => w.resolve(results?.[i] as R));
    } catch (err) {
      if (items.length === 1) waiters[0]!.reject(err);
      // one bad item (say, text the database refuses) must not fail the others: each on its own
      else await Promise.all(items.map((item, i) => this.flush([item]).then((r) => waiters[i]!.resolve(r?.[0] as R), waiters[i]!.reject)));
    } finally {
      this.flushing = false;
      if (this.items.length) this.schedule();
    }
  }
}

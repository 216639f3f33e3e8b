/** The latest `max` values added, the oldest forgotten first: "seen it before?" without growing for
 *  ever. Adding a value already there does not make it newer. */
export class RecentSet<T> {
  private readonly items = new Set<T>();

  constructor(private readonly max: number) {}

  has(value: T): boolean {
    return this.items.has(value);
  }

  add(value: T): void {
    this.items.add(value);
    if (this.items.size > this.max) this.items.delete(this.items.values().next().value as T);
  }
}

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export { Counter, Gauge, Histogram, Registry };

/** A registry per service (not prom-client's global one), so several services can share a process in tests. */
export function createMetrics(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry, prefix: 'hodei_' });
  return registry;
}

/**
 * Gives each of `values` its series at 0 from the start: Prometheus sees no increase in a series
 * that first appears at 1, so without it `rate()` and `increase()` would miss the first event of
 * each label value (the first lost execution after a restart).
 */
export function startAtZero<T extends string>(metric: Counter<T> | Histogram<T>, label: T, values: readonly string[]): void {
  for (const value of values) {
    const labels = { [label]: value } as Partial<Record<T, string>>;
    if (metric instanceof Histogram) metric.zero(labels);
    else metric.inc(labels, 0);
  }
}

// deploy/ stays in step with the code: every metric the Grafana dashboard queries is one a service
// (or the worker agent) declares, and the provisioning points at the datasource the panels use;
// docs/telemetry.md names every metric declared, with its type.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

function sources(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist' || name === 'test') continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) sources(p, out);
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Metric names declared in code (`name: 'hodei_…'`), plus the suffixes Prometheus derives. */
function declaredMetrics(): Set<string> {
  const names = new Set<string>();
  for (const root of ['packages', 'services']) {
    for (const file of sources(join(ROOT, root))) {
      for (const m of readFileSync(file, 'utf8').matchAll(/name:\s*'(hodei_[a-z0-9_]+)'/g)) {
        const n = m[1]!;
        for (const suffix of ['', '_bucket', '_count', '_sum']) names.add(n + suffix);
      }
    }
  }
  return names;
}

/** Where each metric name is declared (`name: 'hodei_…'`), file by file. */
function declarations(): Map<string, string[]> {
  const where = new Map<string, string[]>();
  for (const root of ['packages', 'services']) {
    for (const file of sources(join(ROOT, root))) {
      for (const m of readFileSync(file, 'utf8').matchAll(/name:\s*'(hodei_[a-z0-9_]+)'/g)) where.set(m[1]!, [...(where.get(m[1]!) ?? []), file.slice(ROOT.length)]);
    }
  }
  return where;
}

interface Panel {
  title: string;
  datasource: { uid: string };
  targets: { expr: string }[];
}

describe('deploy/grafana', () => {
  const dashboard = JSON.parse(readFileSync(join(ROOT, 'deploy/grafana/dashboards/hodei.json'), 'utf8')) as { uid: string; panels: Panel[] };

  it('queries only metrics the code declares', () => {
    const declared = declaredMetrics();
    expect(declared.has('hodei_queue_depth')).toBe(true); // the scan itself works
    const used = new Set<string>();
    for (const p of dashboard.panels) for (const t of p.targets) for (const m of t.expr.matchAll(/\bhodei_[a-z0-9_]+/g)) used.add(m[0]);
    expect(used.size).toBeGreaterThan(8);
    expect([...used].filter((n) => !declared.has(n))).toEqual([]);
  });

  it('takes the gauges every replica reads whole from PostgreSQL once, with max: a sum would count them once per replica', () => {
    const wholeInstallation = ['hodei_queue_depth', 'hodei_workers', 'hodei_worker_slots', 'hodei_worker_heartbeat_age_seconds', 'hodei_retries_waiting'];
    const summed: string[] = [];
    for (const p of dashboard.panels) {
      for (const { expr } of p.targets) {
        for (const name of wholeInstallation) {
          const uses = expr.match(new RegExp(`\\b${name}\\b`, 'g'))?.length ?? 0;
          const underMax = expr.match(new RegExp(`\\bmax(?: by \\([^)]*\\))? ?\\(${name}\\b`, 'g'))?.length ?? 0;
          if (uses > underMax) summed.push(`${p.title}: ${expr}`);
        }
      }
    }
    expect(summed).toEqual([]);
  });

  it('declares each metric name once: one Prometheus name, one meaning and one label set in every process', () => {
    // the scheduler's hodei_worker_slots{worker,state} and the agent's capacity were both hodei_worker_slots:
    // the dashboard's sum by (state) added the agents' capacity in as a state="" series
    expect([...declarations()].filter(([, files]) => files.length > 1)).toEqual([]);
  });

  it('has the panels operators look for, on the provisioned Prometheus datasource', () => {
    const titles = dashboard.panels.map((p) => p.title);
    for (const t of ['Queue depth', 'Executions finished by status', 'Execution duration', 'Log lines per second', 'Schedule lateness', 'Worker heartbeat age', 'HTTP latency p95 by route']) {
      expect(titles).toContain(t);
    }
    const ds = YAML.parse(readFileSync(join(ROOT, 'deploy/grafana/provisioning/datasources/datasources.yml'), 'utf8')) as {
      datasources: { uid: string; type: string; url: string }[];
    };
    const prom = ds.datasources.find((d) => d.type === 'prometheus');
    expect(prom?.url).toBe('http://prometheus:9090');
    for (const p of dashboard.panels) expect(p.datasource.uid).toBe(prom?.uid);
  });

  it('prometheus scrapes the three services', () => {
    const prom = YAML.parse(readFileSync(join(ROOT, 'deploy/prometheus.yml'), 'utf8')) as {
      scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
    };
    const targets = prom.scrape_configs.flatMap((j) => j.static_configs.flatMap((s) => s.targets));
    expect(targets).toEqual(expect.arrayContaining(['orchestrator:8080', 'scheduler:8081', 'worker-manager:8082']));
  });
});

describe('docs/telemetry.md', () => {
  const doc = readFileSync(join(ROOT, 'docs/telemetry.md'), 'utf8');

  it('names every metric the code declares and no other, each row of its table with the type the code gives it', () => {
    const types = new Map<string, string>();
    for (const root of ['packages', 'services']) {
      for (const file of sources(join(ROOT, root))) {
        for (const m of readFileSync(file, 'utf8').matchAll(/new (Counter|Gauge|Histogram)(?:<[^>]*>)?\(\{\s*name:\s*'(hodei_[a-z0-9_]+)'/g)) types.set(m[2]!, m[1]!.toLowerCase());
      }
    }
    const declared = [...declarations().keys()].sort();
    expect([...types.keys()].sort()).toEqual(declared); // the scan sees each declaration's type
    const named = new Set([...doc.matchAll(/`(hodei_[a-z0-9_]+)[`{]/g)].map((m) => m[1]!));
    expect(declared.filter((n) => !named.has(n))).toEqual([]);
    expect([...named].filter((n) => !types.has(n))).toEqual([]);
    const rows = doc.split('\n').filter((l) => l.startsWith('| `hodei_'));
    const wrong: string[] = [];
    for (const row of rows) {
      const [names, type] = row.split('|').slice(1, 3).map((c) => c.trim());
      for (const m of names!.matchAll(/`(hodei_[a-z0-9_]+)`/g)) if (types.has(m[1]!) && types.get(m[1]!) !== type) wrong.push(`${m[1]}: ${type}, declared ${types.get(m[1]!)}`);
    }
    expect(rows.length).toBeGreaterThan(15);
    expect(wrong).toEqual([]);
  });
});

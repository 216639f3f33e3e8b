// Dependency checks for the jobs of one pipeline: names resolve, and no job waits on itself.
import { BadRequestError, type FieldError } from '@hodei/platform';

/** The first cycle found in `graph` (node → its dependencies), as the list of nodes on it; null if none. */
export function findCycle(graph: Map<string, readonly string[]>): string[] | null {
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string): string[] | null => {
    const s = state.get(node);
    if (s === 'done') return null;
    if (s === 'visiting') return stack.slice(stack.indexOf(node));
    state.set(node, 'visiting');
    stack.push(node);
    for (const dep of graph.get(node) ?? []) {
      const cycle = visit(dep);
      if (cycle) return cycle;
    }
    stack.pop();
    state.set(node, 'done');
    return null;
  };
  for (const node of graph.keys()) {
    const cycle = visit(node);
    if (cycle) return cycle;
  }
  return null;
}

/**
 * Resolves the `depends_on` names of inline jobs to the ids they will get; throws a 400 naming
 * `jobs.<i>.name` for a duplicate, `jobs.<i>.depends_on` for an unknown name or a cycle.
 */
export function resolveInlineDependencies(jobs: ReadonlyArray<{ name: string; depends_on?: string[] | undefined }>, ids: readonly string[]): string[][] {
  const errors: FieldError[] = [];
  const byName = new Map<string, number>();
  jobs.forEach((j, i) => {
    if (byName.has(j.name)) errors.push({ path: `jobs.${i}.name`, message: `another job of this pipeline is already named "${j.name}"` });
    else byName.set(j.name, i);
  });
  const resolved = jobs.map((j, i) =>
    (j.depends_on ?? []).flatMap((name) => {
      const k = byName.get(name);
      if (k === undefined) {
        errors.push({ path: `jobs.${i}.depends_on`, message: `no job named "${name}" in this pipeline` });
        return [];
      }
      return [ids[k]!];
    }),
  );
  if (errors.length) throw new BadRequestError(`invalid body: ${[...new Set(errors.map((e) => e.path))].join(', ')}`, errors);
  const graph = new Map(ids.map((id, i) => [id, resolved[i]!]));
  const cycle = findCycle(graph);
  if (cycle) {
    const index = ids.indexOf(cycle[0]!);
    const names = [...cycle, cycle[0]!].map((id) => jobs[ids.indexOf(id)]!.name).join(' → ');
    throw new BadRequestError(`invalid body: jobs.${index}.depends_on`, [
      { path: `jobs.${index}.depends_on`, message: `dependency cycle: ${names}` },
    ]);
  }
  return resolved.map((deps) => [...new Set(deps)]);
}

// Counts the SQL statements the in-process services send, by statement text, and prints the most
// frequent ones to stderr at exit. Profiling aid for exec.ts and pipelines.ts:
//   node --import ./count-queries.mjs --import tsx exec.ts --only throughput
// The services and this file resolve the same `pg` module, so patching it here sees every query.
import { createRequire } from 'node:module';

const pg = createRequire(import.meta.url)('pg');
const counts = new Map();
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function (q, ...rest) {
  const text = typeof q === 'string' ? q : (q?.text ?? String(q));
  const key = text.replace(/\s+/g, ' ').trim().slice(0, 110);
  counts.set(key, (counts.get(key) ?? 0) + 1);
  return query.call(this, q, ...rest);
};
process.on('exit', () => {
  const top = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 30);
  process.stderr.write(`SQL statements by text (${[...counts.values()].reduce((a, b) => a + b, 0)} in all):\n`);
  for (const [text, n] of top) process.stderr.write(`${String(n).padStart(7)} ${text}\n`);
});

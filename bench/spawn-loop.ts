// The machine's own limit for `true` jobs: a bare Node loop spawning `/bin/sh -c true`, `parallel`
// at a time. It runs in a Node process of its own that loads nothing else. Run in a process whose
// heap holds the services, every fork would cost twice as much (fork copies the page tables of the
// process that calls it), and the baseline would flatter the platform.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';

const BARE_LOOP = `
const { spawn } = require('node:child_process');
const { readFileSync } = require('node:fs');
const [total, parallel] = process.argv.slice(1).map(Number);
// utime + stime of this process, and of its children once reaped (ms; USER_HZ 100)
const cpu = () => {
  const s = readFileSync('/proc/self/stat', 'latin1');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ').map(Number);
  return { own: (f[11] + f[12]) * 10, children: (f[13] + f[14]) * 10 };
};
// busy time of the whole machine (ms): what else ran meanwhile is the difference
const busy = () => {
  const f = readFileSync('/proc/stat', 'latin1').split('\\n')[0].split(/ +/).slice(1, 9).map(Number);
  return (f.reduce((a, b) => a + b, 0) - f[3] - f[4]) * 10;
};
let started = 0;
const one = () => new Promise((ok, fail) => {
  const c = spawn('/bin/sh', ['-c', 'true'], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  c.stdout.resume();
  c.stderr.resume();
  c.once('error', fail);
  c.once('close', () => ok());
});
const c0 = cpu();
const b0 = busy();
const t0 = performance.now();
Promise.all(Array.from({ length: parallel }, async () => {
  while (started < total) { started++; await one(); }
})).then(() => {
  const s = (performance.now() - t0) / 1000;
  const c1 = cpu();
  const b1 = busy();
  process.stdout.write(JSON.stringify({ rate: total / s, loopMs: (c1.own - c0.own) / total, jobMs: (c1.children - c0.children) / total, machineMs: (b1 - b0) / total }));
});
`;

export interface SpawnLoop {
  /** spawns per second */
  rate: number;
  /** CPU per spawn of the Node loop itself (fork, exec, pipes, reaping), ms */
  loopMs: number;
  /** CPU per spawn of the `/bin/sh -c true` processes, ms */
  jobMs: number;
  /** busy CPU of the whole machine per spawn while the loop ran (the loop, its jobs, the kernel's
   *  share no process is charged for, and whatever else ran), ms */
  machineMs: number;
}

export async function bareSpawnLoop(total: number, parallel: number): Promise<SpawnLoop> {
  const child = spawn(process.execPath, ['-e', BARE_LOOP, String(total), String(parallel)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  const result = code === 0 ? (JSON.parse(out || '{}') as Partial<SpawnLoop>) : {};
  if (!(Number(result.rate) > 0)) throw new Error(`the bare spawn loop failed (exit ${code}): ${out}`);
  return result as SpawnLoop;
}

/** Busy CPU time of the whole machine so far (ms, all cores), from /proc/stat (user to steal). */
export function machineBusyMs(): number {
  const f = readFileSync('/proc/stat', 'latin1').split('\n')[0]!.split(/ +/).slice(1, 9).map(Number);
  return (f.reduce((a, b) => a + b, 0) - f[3]! - f[4]!) * 10;
}

/** utime + stime of a process so far (ms), from /proc/<pid>/stat (USER_HZ 100). */
export function cpuMs(pid: number): number {
  const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

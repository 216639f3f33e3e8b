// scripts/lib.sh, which `make start-services` / `stop-services` / `status` use to tell whether a
// service of a pid file runs.
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it, onTestFinished } from 'vitest';

const LIB = fileURLToPath(new URL('../../../scripts/lib.sh', import.meta.url));

/** What `live_pid` prints for a pid file holding `pid` (empty: not running). */
function livePid(pid: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'hodei-lib-'));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'svc.pid'), `${pid}\n`);
  return execFileSync('bash', ['-c', `source "$1"; live_pid "$2" || true`, 'bash', LIB, join(dir, 'svc.pid')], { encoding: 'utf8' }).trim();
}

it('live_pid takes a running process for running, and a zombie (exited, not reaped) or a gone one for not running', async () => {
  // a parent that does not reap its child for 10 s: the child is a zombie meanwhile
  const parent = spawn('perl', ['-e', '$| = 1; my $pid = fork() // die; if (!$pid) { exit 0 } print "$pid\\n"; sleep 10'], { stdio: ['ignore', 'pipe', 'inherit'] });
  onTestFinished(() => void parent.kill('SIGKILL'));
  const zombie = Number(await new Promise<string>((resolve) => parent.stdout!.once('data', (d: Buffer) => resolve(d.toString()))));
  await expect.poll(() => execFileSync('ps', ['-o', 'stat=', '-p', String(zombie)], { encoding: 'utf8' }).trim()).toMatch(/^Z/);

  expect(livePid(parent.pid!)).toBe(String(parent.pid));
  expect(livePid(zombie)).toBe('');
  parent.kill('SIGKILL');
  await new Promise((r) => parent.once('exit', r));
  expect(livePid(parent.pid!)).toBe('');
});

it('`make clean` removes the demo logs under HODEI_STATE_DIR with the services\' logs', () => {
  // a copy of the scripts, so ROOT (the dist/ it removes) is a scratch directory, not this checkout
  const root = mkdtempSync(join(tmpdir(), 'hodei-clean-'));
  onTestFinished(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'scripts'));
  for (const script of ['lib.sh', 'clean.sh']) copyFileSync(fileURLToPath(new URL(`../../../scripts/${script}`, import.meta.url)), join(root, 'scripts', script));
  const state = join(root, 'state');
  for (const dir of ['logs', 'demo']) {
    mkdirSync(join(state, dir), { recursive: true });
    writeFileSync(join(state, dir, 'x.log'), 'output\n');
  }
  execFileSync('bash', [join(root, 'scripts', 'clean.sh')], { env: { ...process.env, HODEI_STATE_DIR: state }, stdio: 'pipe' });
  expect(readdirSync(state)).toEqual([]);
});

it('a service log survives logrotate copytruncate: after the truncate, the service writes from the start, with no hole', async () => {
  // spawn_bg opens the log for appending (>>), so a write after the truncate goes to the new end
  const dir = mkdtempSync(join(tmpdir(), 'hodei-logrotate-'));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, 'svc.log');
  const pidFile = join(dir, 'svc.pid');
  execFileSync('bash', ['-c', `source "$1"; spawn_bg "$2" "$3" bash -c 'for i in $(seq 1 400); do echo "line $i of the service log"; sleep 0.01; done'`, 'bash', LIB, pidFile, log]);
  const pid = Number(readFileSync(pidFile, 'utf8'));
  onTestFinished(() => void (() => { try { process.kill(pid, 'SIGKILL'); } catch { /* ended */ } })());
  await expect.poll(() => statSync(log).size, { timeout: 5000 }).toBeGreaterThan(2000);
  truncateSync(log, 0); // what copytruncate does once it copied the file
  await new Promise((r) => setTimeout(r, 300));
  const after = readFileSync(log);
  expect(after.length).toBeGreaterThan(0);
  expect(after.length).toBeLessThan(2000);
  expect(after.includes(0)).toBe(false); // no hole of NUL bytes where the old content was
  expect(after.toString()).toMatch(/^line \d+ of the service log\n/);
});

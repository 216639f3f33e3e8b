// The agents' log folder is made with the first log and goes with the last one: nothing is left
// in the temp dir once every agent has exited.
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentLogDir, agentLogPath, openAgentLog, removeAgentLog } from '../src/workers/agent-log.js';

// a temp dir of this file's own: the agents of the other test files log to the shared one
const savedTmpdir = process.env.TMPDIR;
let scratch = '';
beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'hodei-agent-log-'));
  process.env.TMPDIR = scratch;
});
afterAll(() => {
  if (savedTmpdir === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = savedTmpdir;
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('agent log files', () => {
  it('the folder is removed with the last log in it, and made again for the next one', () => {
    expect(agentLogDir().startsWith(scratch)).toBe(true);
    closeSync(openAgentLog('a'));
    closeSync(openAgentLog('b'));
    expect(readdirSync(agentLogDir()).sort()).toEqual(['a.log', 'b.log']);
    removeAgentLog('a');
    expect(readdirSync(agentLogDir())).toEqual(['b.log']);
    removeAgentLog('b');
    expect(existsSync(agentLogDir())).toBe(false);
    expect(readdirSync(scratch)).toEqual([]);
    closeSync(openAgentLog('c'));
    expect(existsSync(agentLogPath('c'))).toBe(true);
    removeAgentLog('c');
    removeAgentLog('c'); // once more: nothing there
    expect(readdirSync(scratch)).toEqual([]);
  });

  it('refuses a folder of that name that others can use, or a link in its place, and writes nothing there', () => {
    mkdirSync(agentLogDir(), { mode: 0o700 });
    chmodSync(agentLogDir(), 0o777); // made by someone else for everyone
    expect(() => openAgentLog('d')).toThrow(`${agentLogDir()} is owned by uid ${process.getuid!()}, mode 777, not a folder only this user can use`);
    expect(readdirSync(agentLogDir())).toEqual([]);
    rmSync(agentLogDir(), { recursive: true });

    const elsewhere = mkdtempSync(join(scratch, 'elsewhere-'));
    symlinkSync(elsewhere, agentLogDir());
    expect(() => openAgentLog('e')).toThrow(`${agentLogDir()} is a symbolic link`);
    expect(readdirSync(elsewhere)).toEqual([]);
    rmSync(agentLogDir());
    rmSync(elsewhere, { recursive: true });
  });
});

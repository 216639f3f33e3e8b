// A worker agent writes its stdout and stderr to a file of its own rather than to a pipe to this
// service: the agent outlives this process (the next run adopts it), and once a pipe's reader is
// gone every write to it fails (EPIPE: Node throws on the second one and the agent died of it,
// perl — the agent's spawner, which shares its stderr — dies of SIGPIPE). This service follows
// the file and puts each of its lines in its own log; the file goes once the agent has exited,
// and the folder with the last one.
import { lstatSync, mkdirSync, openSync, rmdirSync, unlinkSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';

const POLL_MS = 100;
const CHUNK_BYTES = 64 * 1024;
/** A longer run of output without a newline is passed on in pieces of this size. */
const MAX_LINE_CHARS = 16 * 1024;

/** One folder for the agents of every worker-manager of this user on this host. */
export const agentLogDir = () => join(tmpdir(), `hodei-worker-logs-${process.getuid?.() ?? 0}`);

export const agentLogPath = (workerId: string) => join(agentLogDir(), `${workerId}.log`);

/** Creates the agent's log file (appending when it exists) and returns a descriptor for spawn's stdio; the caller closes it. */
export function openAgentLog(workerId: string): number {
  const dir = agentLogDir();
  for (let attempt = 1; ; attempt++) {
    try {
      // not recursive: the temp dir exists, and Node's recursive mkdir spins for ever where mkdir
      // answers ENOENT under an existing parent (TMPDIR under /proc hung the whole service)
      mkdirSync(dir, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      checkPrivate(dir);
    }
    try {
      return openSync(agentLogPath(workerId), 'a', 0o600);
    } catch (err) {
      // another worker-manager removed the folder, empty, between the two calls: make it again
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt === 3) throw err;
    }
  }
}

/** The temp dir is everyone's: a folder of that name someone else made (or a link) would let them
 *  read the agents' output or put lines in it. */
function checkPrivate(dir: string): void {
  const st = lstatSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o077) !== 0) {
    const what = st.isSymbolicLink() ? 'a symbolic link' : st.isDirectory() ? `owned by uid ${st.uid}, mode ${(st.mode & 0o777).toString(8)}` : 'not a folder';
    throw new Error(`${dir} is ${what}, not a folder only this user can use (uid ${uid ?? '?'}, mode 700): remove it, or set TMPDIR elsewhere`);
  }
}

/** Follows an agent's log file: every line written from `from` on reaches `onLine`, in order. */
export class AgentLogFollower {
  private file: FileHandle | undefined;
  private pos = 0;
  private pending = '';
  private readonly decoder = new StringDecoder('utf8');
  private readonly timer: NodeJS.Timeout;
  private reading: Promise<void> = Promise.resolve();
  private readonly opened: Promise<void>;

  /** `from: 'end'` skips what the file holds already (an adopted agent: a previous run relayed it). */
  constructor(
    private readonly workerId: string,
    from: 'start' | 'end',
    private readonly onLine: (line: string) => void,
  ) {
    this.opened = open(agentLogPath(workerId), 'r').then(
      async (file) => {
        this.file = file;
        if (from === 'end') this.pos = (await file.stat()).size;
      },
      () => undefined, // no file: an agent started before its output went to one
    );
    this.timer = setInterval(() => this.poll(), POLL_MS).unref();
  }

  private poll(): Promise<void> {
    this.reading = this.reading.then(() => this.readToEnd());
    return this.reading;
  }

  private async readToEnd(): Promise<void> {
    await this.opened;
    if (!this.file) return;
    const buf = Buffer.allocUnsafe(CHUNK_BYTES);
    for (;;) {
      const { bytesRead } = await this.file.read(buf, 0, CHUNK_BYTES, this.pos).catch(() => ({ bytesRead: 0 }));
      if (bytesRead === 0) return;
      this.pos += bytesRead;
      this.take(this.decoder.write(buf.subarray(0, bytesRead)));
    }
  }

  private take(text: string): void {
    let rest = this.pending + text;
    for (let nl = rest.indexOf('\n'); nl !== -1; nl = rest.indexOf('\n')) {
      this.emit(rest.slice(0, nl));
      rest = rest.slice(nl + 1);
    }
    while (rest.length >= MAX_LINE_CHARS) {
      this.emit(rest.slice(0, MAX_LINE_CHARS));
      rest = rest.slice(MAX_LINE_CHARS);
    }
    this.pending = rest;
  }

  private emit(line: string): void {
    const text = line.endsWith('\r') ? line.slice(0, -1) : line;
    if (text !== '') this.onLine(text);
  }

  /** The agent has exited: passes on what is left (a last line without a newline too), closes
   *  and removes the file. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.poll();
    this.take(this.decoder.end());
    if (this.pending) this.emit(this.pending);
    this.pending = '';
    await this.file?.close().catch(() => undefined);
    this.file = undefined;
    removeAgentLog(this.workerId);
  }
}

/** Removes the agent's log file, and the folder when no other agent's log is left in it. */
export function removeAgentLog(workerId: string): void {
  try {
    unlinkSync(agentLogPath(workerId));
  } catch {
    // not there
  }
  try {
    rmdirSync(agentLogDir());
  } catch {
    // another agent's log is in it, or it is gone
  }
}

// Running the built `hodei` as a subprocess and recording when each output line arrived.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createServer, request, type ClientRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

export function buildCli(): void {
  execFileSync('npx', ['tsc', '-b', 'packages/cli'], { cwd: ROOT, stdio: 'pipe' });
}

export interface Line {
  at: number;
  text: string;
}

export interface Run {
  child: ChildProcess;
  stdoutLines: Line[];
  stderrLines: Line[];
  /** Resolves when the process exits. */
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; exitedAt: number }>;
  /** Resolves when a stdout or stderr line matches. */
  waitFor: (re: RegExp, timeoutMs?: number) => Promise<Line>;
}

export function hodei(args: string[], env: Record<string, string>): Run {
  const child = spawn(process.execPath, [MAIN, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdoutLines: Line[] = [];
  const stderrLines: Line[] = [];
  let stdout = '';
  let stderr = '';
  const waiters: { re: RegExp; resolve: (l: Line) => void }[] = [];
  const splitter = (sink: Line[], append: (s: string) => void) => {
    let partial = '';
    return (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      append(text);
      partial += text;
      const parts = partial.split('\n');
      partial = parts.pop() ?? '';
      for (const p of parts) {
        const line = { at: Date.now(), text: p };
        sink.push(line);
        for (const w of [...waiters]) if (w.re.test(p)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    };
  };
  child.stdout!.on('data', splitter(stdoutLines, (s) => (stdout += s)));
  child.stderr!.on('data', splitter(stderrLines, (s) => (stderr += s)));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; exitedAt: number }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, exitedAt: Date.now() })),
  );
  const waitFor = (re: RegExp, timeoutMs = 20_000) =>
    new Promise<Line>((resolve, reject) => {
      const seen = [...stdoutLines, ...stderrLines].find((l) => re.test(l.text));
      if (seen) return resolve(seen);
      const timer = setTimeout(() => reject(new Error(`no line matched ${re} within ${timeoutMs}ms:\n${stdout}\n${stderr}`)), timeoutMs);
      waiters.push({ re, resolve: (l) => (clearTimeout(timer), resolve(l)) });
    });
  return { child, stdoutLines, stderrLines, done, waitFor };
}

/** Run to the end. */
export async function hodeiDone(args: string[], env: Record<string, string>) {
  const r = hodei(args, env);
  const res = await r.done;
  return { ...res, stdoutLines: r.stdoutLines, stderrLines: r.stderrLines };
}

export interface Proxy {
  url: string;
  server: Server;
  /** Closes it and every connection it holds. */
  close: () => Promise<void>;
}

/** A stand-in in front of `target` that forwards every request; `answer` sends each answer on (by default as it comes). */
export async function forwardingProxy(
  target: string,
  answer: (req: IncomingMessage, res: ServerResponse, upRes: IncomingMessage, up: ClientRequest) => void = (_req, res, upRes) => {
    res.writeHead(upRes.statusCode ?? 502, upRes.headers);
    upRes.pipe(res);
  },
  port = 0,
): Promise<Proxy> {
  const server = createServer((req, res) => {
    const up = request(new URL(req.url ?? '/', target), { method: req.method, headers: { ...req.headers, host: new URL(target).host } }, (upRes) => answer(req, res, upRes, up));
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const close = async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  };
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, close };
}

/** Forwards to `target`, answering requests for `path` 1 s late; `asked` resolves when one arrives. */
export async function lateAnswer(target: string, path: string): Promise<Proxy & { asked: Promise<void> }> {
  let answered: () => void = () => undefined;
  const asked = new Promise<void>((resolve) => (answered = resolve));
  const proxy = await forwardingProxy(target, (req, res, upRes) => {
    const late = req.url === path;
    if (late) answered();
    setTimeout(() => (res.writeHead(upRes.statusCode ?? 502, upRes.headers), upRes.pipe(res)), late ? 1000 : 0);
  });
  return { ...proxy, asked };
}

/** Forwards to `target`; the first event stream whose path matches `stream` is cut once its text matches `cutAfter`. */
export async function cuttingProxy(target: string, stream: RegExp, cutAfter: RegExp): Promise<Proxy & { streams: { lastEventId: string | undefined; text: string }[] }> {
  const streams: { lastEventId: string | undefined; text: string }[] = [];
  const proxy = await forwardingProxy(target, (req, res, upRes, up) => {
    const seen = stream.test(req.url ?? '') ? { lastEventId: req.headers['last-event-id'] as string | undefined, text: '' } : null;
    if (seen) streams.push(seen);
    const cut = seen !== null && streams.length === 1;
    res.writeHead(upRes.statusCode ?? 502, upRes.headers);
    upRes.on('data', (chunk: Buffer) => {
      if (res.destroyed || res.writableEnded) return;
      if (seen) seen.text += chunk.toString();
      if (!seen || !cut || !cutAfter.test(seen.text)) return void res.write(chunk);
      // once the client has what went through: cut
      up.destroy();
      res.end(chunk, () => res.destroy());
    });
    upRes.on('end', () => res.end());
    upRes.on('error', () => res.destroy());
  });
  return { ...proxy, streams };
}

/** A service coming back: started on `port` (refused until then), it answers the first `times`
 *  requests for `path` 503 ("try again", as a service whose database is away), then forwards to `target`. */
export async function recoveringProxy(target: string, port: number, path: RegExp, times: number): Promise<Proxy & { unavailableAnswers: () => number }> {
  let answered = 0;
  const proxy = await forwardingProxy(
    target,
    (req, res, upRes, up) => {
      if (path.test(req.url ?? '') && answered < times) {
        answered++;
        up.destroy();
        res.writeHead(503, { 'content-type': 'application/problem+json' });
        res.end(JSON.stringify({ type: 'about:blank', title: 'Service Unavailable', status: 503, detail: 'the database is unavailable; try again' }));
        return;
      }
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    },
    port,
  );
  return { ...proxy, unavailableAnswers: () => answered };
}

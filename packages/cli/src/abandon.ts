// hodei going away while it follows an execution or a run (killed, its terminal closed, its reader
// gone) takes what it follows with it, as the end of a local pipeline would: nobody would see the rest.
import { exitWhenWritten, whenReaderGone, type Output } from './output.js';

export interface Abandonment {
  /** 143 (SIGTERM), 129 (SIGHUP) or 141 (reader gone) once hodei was told to go: it wins over the followed one's code. */
  readonly code: number | null;
  /** The follow is over: signals and a closed pipe no longer cancel anything. */
  release(): void;
}

export function cancelWhenAbandoned(
  out: Output,
  opts: { what: () => string; cancel: () => Promise<unknown>; beforeNote?: () => void },
): Abandonment {
  let code: number | null = null;
  const abandon = async (c: number) => {
    code = c;
    await opts.cancel().catch(() => undefined);
    return c;
  };
  const onTerm = (signal: NodeJS.Signals) => {
    opts.beforeNote?.();
    if (signal === 'SIGTERM') out.note(`hodei got SIGTERM: cancelling ${opts.what()}`);
    void abandon(signal === 'SIGTERM' ? 143 : 129).then(exitWhenWritten);
  };
  process.on('SIGTERM', onTerm).on('SIGHUP', onTerm);
  whenReaderGone(() => abandon(141));
  return {
    get code() {
      return code;
    },
    release() {
      process.off('SIGTERM', onTerm).off('SIGHUP', onTerm);
      whenReaderGone(null);
    },
  };
}

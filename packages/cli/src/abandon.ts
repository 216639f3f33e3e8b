// hodei going away while it follows an execution or a run (killed, its terminal closed, its reader
// gone) takes what it follows with it, as the end of a local pipeline would: nobody would see the rest.
import { exitWhenTold, READER_GONE_EXIT, whenReaderGone, type Output } from './output.js';

export interface Abandonment {
  /** 143 (SIGTERM), 129 (SIGHUP) or 141 (reader gone) once hodei was told to go: it wins over the followed one's code. */
  readonly code: number | null;
  /** The follow is over: signals and a closed pipe no longer cancel anything. */
  release(): void;
  /** Act on a SIGTERM or SIGHUP that came before the follow began (see holdSignals). */
  signalled(signal: 'SIGTERM' | 'SIGHUP'): void;
}

export const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;
export type HeldSignal = keyof typeof SIGNAL_EXIT;

/**
 * While a job or a run is being created there is nothing to cancel yet: Ctrl-C, SIGTERM and SIGHUP
 * are kept (the first one) for when there is, instead of ending hodei while the request that starts
 * it is on its way. A second Ctrl-C still ends hodei at once (exit 130).
 */
export function holdSignals(): { readonly signal: HeldSignal | null; release(): void } {
  let signal: HeldSignal | null = null;
  const on = (s: NodeJS.Signals) => {
    if (s === 'SIGINT' && signal === 'SIGINT') return exitWhenTold(130);
    signal ??= s as HeldSignal;
  };
  process.on('SIGINT', on).on('SIGTERM', on).on('SIGHUP', on);
  return {
    get signal() {
      return signal;
    },
    release() {
      process.off('SIGINT', on).off('SIGTERM', on).off('SIGHUP', on);
    },
  };
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
    void abandon(SIGNAL_EXIT[signal === 'SIGTERM' ? 'SIGTERM' : 'SIGHUP']).then(exitWhenTold);
  };
  process.on('SIGTERM', onTerm).on('SIGHUP', onTerm);
  whenReaderGone(() => abandon(READER_GONE_EXIT));
  return {
    get code() {
      return code;
    },
    release() {
      process.off('SIGTERM', onTerm).off('SIGHUP', onTerm);
      whenReaderGone(null);
    },
    signalled: onTerm,
  };
}

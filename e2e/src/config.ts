// The suite's only reads of the environment: which infrastructure, where the local one is, whether
// to build first. Everything else gets these values passed in.
import { fileURLToPath } from 'node:url';

export type InfraMode = 'testcontainers' | 'local' | 'auto';

/** The checkout whose built services and CLI run (E2E_ROOT; default: the one this suite lives in). */
export const ROOT = process.env.E2E_ROOT ?? fileURLToPath(new URL('../../', import.meta.url));

export const settings = {
  /** E2E_INFRA: testcontainers | local | auto (default: testcontainers when a Docker engine answers). */
  infra: parseMode(process.env.E2E_INFRA),
  /** Local mode: a database URL of the server (the suite creates and drops its own database there). */
  localDatabaseUrl: process.env.E2E_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  localNatsUrl: process.env.E2E_NATS_URL ?? process.env.NATS_URL ?? 'nats://127.0.0.1:4222',
  /** E2E_SKIP_BUILD=1 when the caller built already (make test-e2e does). */
  skipBuild: process.env.E2E_SKIP_BUILD === '1',
  /** E2E_KEEP_LOGS=1 keeps the services' log files of passing runs too. */
  keepLogs: process.env.E2E_KEEP_LOGS === '1',
  /** The environment handed to every process the suite starts (PATH, HOME…), minus Hodei's own variables. */
  baseEnv: (): Record<string, string> => {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (v === undefined || k.startsWith('HODEI_') || k.startsWith('OTEL_') || k === 'DATABASE_URL' || k === 'NATS_URL') continue;
      env[k] = v;
    }
    return env;
  },
};

function parseMode(v: string | undefined): InfraMode {
  if (v === undefined || v === '' || v === 'auto') return 'auto';
  if (v === 'testcontainers' || v === 'local') return v;
  throw new Error(`E2E_INFRA must be testcontainers, local or auto (got ${JSON.stringify(v)})`);
}

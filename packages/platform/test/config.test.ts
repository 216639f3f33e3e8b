import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, redactConfig } from '../src/index.js';

describe('loadConfig', () => {
  it('takes body limits body-parser reads, and refuses others at once, naming the variable', () => {
    for (const limit of ['1mb', '512kb', '10MB', '1048576', '1.5mb', '2 mb', '512b']) expect(loadConfig('scheduler', { HODEI_BODY_LIMIT: limit }).bodyLimit).toBe(limit);
    // 'abc' passed, and the service died at start-up on body-parser's TypeError; '-1mb' started
    // a service that refused every body, ' 2 gb ' and '1.5' one that took 2 bytes and 1
    for (const limit of ['abc', '-1mb', ' 2 gb ', '1.5', '1 megabyte']) {
      expect(() => loadConfig('scheduler', { HODEI_BODY_LIMIT: limit }), limit).toThrow(ConfigError);
      expect(() => loadConfig('scheduler', { HODEI_BODY_LIMIT: limit }), limit).toThrow(/HODEI_BODY_LIMIT: must be a size/);
    }
  });

  it('takes only http(s) URLs for the services, naming the variable otherwise', () => {
    // ftp:// passed, and every call to that service failed at run time
    for (const name of ['HODEI_ORCHESTRATOR_URL', 'HODEI_SCHEDULER_URL', 'HODEI_WORKER_MANAGER_URL']) {
      expect(() => loadConfig('orchestrator', { [name]: 'ftp://host:8080' }), name).toThrow(new RegExp(`${name}: must be an http:// or https:// URL`));
      expect(() => loadConfig('orchestrator', { [name]: 'https://host:8080' }), name).not.toThrow();
    }
  });

  it('takes a NATS address as the NATS client does, naming NATS_URL otherwise', () => {
    for (const url of ['nats://127.0.0.1:4222', '127.0.0.1:4222', 'localhost', 'nats://a:1, nats://b:2', 'tls://x:4443', 'nats://u:p@host:4222', '[::1]:4222'])
      expect(loadConfig('scheduler', { NATS_URL: url }).natsUrl, url).toBe(url);
    // http:// was taken as is (the client connects to that port), a port that is no number died in the client with 'Invalid URL'
    for (const url of ['http://127.0.0.1:4222', 'nats://127.0.0.1:nats'])
      expect(() => loadConfig('scheduler', { NATS_URL: url }), url).toThrow(/NATS_URL: must be a NATS server address such as nats:\/\/127\.0\.0\.1:4222/);
  });

  it('refuses a token no Authorization header can carry, naming HODEI_API_TOKEN and not quoting it', () => {
    // 'tok\n' started every service, which no client could then authenticate to
    for (const token of ['s3cret\n', 's3cret\r', ' s3cret', 's3cret\u0001x', 's3cr\u00e9t']) {
      expect(() => loadConfig('orchestrator', { HODEI_API_TOKEN: token }), JSON.stringify(token)).toThrow(/HODEI_API_TOKEN: must be printable ASCII/);
      expect(() => loadConfig('orchestrator', { HODEI_API_TOKEN: token })).not.toThrow(/s3cr/);
    }
    expect(loadConfig('orchestrator', { HODEI_API_TOKEN: 'a-Z_0.9~+/= inner space ok' }).apiToken).toBe('a-Z_0.9~+/= inner space ok');
  });

  it('logs no database password nor NATS credential, whatever characters they hold', () => {
    // 'starting' logged postgres://u:pw1:***@… (the part before a ':'), a ?password= and nats://user:pass@ whole
    const cases: [Record<string, string>, string][] = [
      [{ DATABASE_URL: 'postgres://app:pw1:Secret@db:5432/hodei' }, 'postgres://app:***@db:5432/hodei'],
      [{ DATABASE_URL: 'postgres://app:pw2@Secret@db/hodei' }, 'postgres://app:***@db/hodei'],
      [{ DATABASE_URL: 'postgres://db/hodei?user=app&password=pw3Secret&sslmode=require' }, 'postgres://db/hodei?user=app&password=***&sslmode=require'],
      [{ NATS_URL: 'nats://natsuser:pw4Secret@nats1:4222,tls://tok5Secret@nats2:4443' }, 'nats://***@nats1:4222,tls://***@nats2:4443'],
    ];
    for (const [env, shown] of cases) {
      const logged = JSON.stringify(redactConfig(loadConfig('scheduler', env)));
      expect(logged, shown).not.toMatch(/pw\d|Secret/);
      expect(logged).toContain(JSON.stringify(shown));
    }
    expect(redactConfig(loadConfig('scheduler', { DATABASE_URL: 'postgres://app@db:5432/hodei' })).databaseUrl).toBe('postgres://app@db:5432/hodei');
  });

  it('takes the heartbeat interval and time-out the worker agent takes, naming the variable otherwise', () => {
    // 1 ms started worker-manager, whose agents then refused the same value (at least 10) and died
    expect(() => loadConfig('worker-manager', { HODEI_HEARTBEAT_INTERVAL_MS: '5' })).toThrow(/HODEI_HEARTBEAT_INTERVAL_MS: must be at least 10 \(ms\)/);
    expect(() => loadConfig('scheduler', { HODEI_HEARTBEAT_TIMEOUT_MS: '9' })).toThrow(/HODEI_HEARTBEAT_TIMEOUT_MS: must be at least 10 \(ms\)/);
    expect(() => loadConfig('scheduler', { HODEI_HEARTBEAT_INTERVAL_MS: '500', HODEI_HEARTBEAT_TIMEOUT_MS: '500' })).toThrow(
      /HODEI_HEARTBEAT_TIMEOUT_MS: must be greater than HODEI_HEARTBEAT_INTERVAL_MS \(500\)/,
    );
    const c = loadConfig('worker-manager', { HODEI_HEARTBEAT_INTERVAL_MS: '10', HODEI_HEARTBEAT_TIMEOUT_MS: '11' });
    expect([c.heartbeatIntervalMs, c.heartbeatTimeoutMs]).toEqual([10, 11]);
  });

  it('takes a logs stream byte limit above what worker-manager keeps of stored lines, naming the variable otherwise', () => {
    // at or under it, nothing stored would ever be purged: once full, the stream would stay full
    expect(() => loadConfig('worker-manager', { HODEI_LOG_STREAM_KEEP_BYTES: '1000', HODEI_LOG_STREAM_MAX_BYTES: '1000' })).toThrow(
      /HODEI_LOG_STREAM_MAX_BYTES: must be greater than HODEI_LOG_STREAM_KEEP_BYTES \(1000\)/,
    );
    expect(loadConfig('scheduler', {}).logStreamMaxBytes).toBe(1024 ** 3);
    expect(loadConfig('scheduler', { HODEI_LOG_STREAM_MAX_BYTES: '300000000' }).logStreamMaxBytes).toBe(300_000_000);
  });

  it('takes an empty variable (`NAME=` in a .env file) as unset, as the CLI does', () => {
    // HODEI_API_TOKEN= stopped every service with 'HODEI_API_TOKEN: Too small'; an empty port was
    // port 0 (a random one), an empty HODEI_CORS_ORIGINS refused every browser
    const names = ['HODEI_API_TOKEN', 'DATABASE_URL', 'HODEI_HOST', 'HODEI_ORCHESTRATOR_PORT', 'HODEI_SCHEDULER_URL', 'HODEI_CORS_ORIGINS',
      'HODEI_BODY_LIMIT', 'LOG_LEVEL', 'HODEI_HEARTBEAT_TIMEOUT_MS', 'HODEI_KILL_GRACE_MS'];
    const c = loadConfig('orchestrator', Object.fromEntries(names.map((n) => [n, ''])));
    expect(c).toEqual(loadConfig('orchestrator', {}));
    expect([c.apiToken, c.port, c.corsOrigins, c.killGraceMs]).toEqual([undefined, 8080, undefined, 5000]);
  });
});

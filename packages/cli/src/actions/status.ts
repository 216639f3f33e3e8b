// `hodei status`: is each service there, healthy, and does it take the token?
import type { Command } from 'commander';
import { Health } from '@hodei/types';
import { SERVICES, type ServiceName } from '../config.js';
import { context } from '../context.js';
import { CliError } from '../errors.js';
import { statusText } from '../output.js';
import { formatDuration } from '../parse.js';

/** A cheap /api/v1 route of each service: /health is open, so only this tells whether the token is taken. */
const TOKEN_PROBE: Record<ServiceName, string> = {
  orchestrator: '/api/v1/pipelines',
  scheduler: '/api/v1/workers',
  'worker-manager': '/api/v1/workers',
};

export const status = async (_f: unknown, cmd: Command) => {
  const { client, out, config } = context(cmd);
  const rows = await Promise.all(
    SERVICES.map(async (s) => {
      try {
        const res = await client.fetch(s, 'GET', '/health', { timeoutMs: 5000 });
        const body = Health.safeParse(await res.json().catch(() => undefined));
        if (!body.success) return { service: s, url: config.urls[s], status: `answered ${res.status}`, ok: false };
        const probe = await client.fetch(s, 'GET', TOKEN_PROBE[s], { query: { limit: 1 }, timeoutMs: 5000 });
        await probe.body?.cancel();
        if (probe.status === 401) return { service: s, url: config.urls[s], status: 'token refused', ok: false, token_refused: true, health: body.data };
        return { service: s, url: config.urls[s], status: body.data.status, ok: res.ok, health: body.data };
      } catch (err) {
        return { service: s, url: config.urls[s], status: 'unreachable', ok: false, error: (err as Error).message };
      }
    }),
  );
  if (out.json) out.printJson(rows);
  else
    out.table(
      ['SERVICE', 'URL', 'STATUS', 'VERSION', 'UPTIME', 'CHECKS'],
      rows.map((r) => [
        r.service,
        r.url,
        r.ok ? statusText(out.out, r.status === 'ok' ? 'completed' : 'queued').replace(/completed|queued/, r.status) : out.out('red', r.status),
        r.health?.version ?? '-',
        r.health ? formatDuration(r.health.uptime_seconds * 1000) : '-',
        r.health ? Object.entries(r.health.checks).map(([k, v]) => `${k}=${v}`).join(' ') : '-',
      ]),
    );
  const down = rows.filter((r) => !r.ok && !r.token_refused);
  if (down.length) throw new CliError(`${down.map((r) => r.service).join(', ')} not healthy`, 2);
  const refusing = rows.filter((r) => r.token_refused).map((r) => r.service);
  if (refusing.length)
    throw new CliError(
      config.token
        ? `${refusing.join(', ')} refused the token: check --token / HODEI_API_TOKEN`
        : `${refusing.join(', ')} ${refusing.length === 1 ? 'needs' : 'need'} a token: set HODEI_API_TOKEN or pass --token`,
    );
};

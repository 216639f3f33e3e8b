// `hodei status`: is each service there, and healthy?
import type { Command } from 'commander';
import { Health } from '@hodei/types';
import { SERVICES } from '../config.js';
import { context } from '../context.js';
import { CliError } from '../errors.js';
import { statusText } from '../output.js';
import { formatDuration } from '../parse.js';

export const status = async (_f: unknown, cmd: Command) => {
  const { client, out, config } = context(cmd);
  const rows = await Promise.all(
    SERVICES.map(async (s) => {
      try {
        const res = await client.fetch(s, 'GET', '/health', { timeoutMs: 5000 });
        const body = Health.safeParse(await res.json().catch(() => undefined));
        if (!body.success) return { service: s, url: config.urls[s], status: `answered ${res.status}`, ok: false };
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
  const down = rows.filter((r) => !r.ok);
  if (down.length) throw new CliError(`${down.map((r) => r.service).join(', ')} not healthy`, 2);
};

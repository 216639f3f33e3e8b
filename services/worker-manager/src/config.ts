// The environment a spawned worker agent inherits (PATH, HOME, locale…): the one place this
// service reads process.env, beside the platform's config.
export function inheritedEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || k.startsWith('HODEI_') || k === 'DATABASE_URL') continue;
    env[k] = v;
  }
  return env;
}

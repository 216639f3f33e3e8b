// What telemetry reads from the environment, in one place. The OTEL_* variables themselves
// (endpoint, sampler, batch delays…) are read by the OpenTelemetry SDK, as its documentation says.
import path from 'node:path';

export interface TelemetryConfig {
  /** OTLP/HTTP base URL (`OTEL_EXPORTER_OTLP_ENDPOINT` or `..._TRACES_ENDPOINT`); unset: no SDK at all. */
  endpoint: string | undefined;
  /** `OTEL_SERVICE_NAME`, else guessed from the entry script (services/<svc>/…, packages/worker/…). */
  serviceName: string;
  /** True when the name came from `OTEL_SERVICE_NAME` (the SDK's env detector applies it itself). */
  serviceNameFromEnv: boolean;
}

export function loadTelemetryConfig(env: Record<string, string | undefined> = process.env, argv: string[] = process.argv): TelemetryConfig {
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT || undefined;
  const fromEnv = env.OTEL_SERVICE_NAME?.trim();
  const disabled = env.OTEL_SDK_DISABLED === 'true';
  return {
    endpoint: disabled ? undefined : endpoint,
    serviceName: fromEnv || serviceNameFromScript(argv[1] ?? ''),
    serviceNameFromEnv: Boolean(fromEnv),
  };
}

/** `…/services/scheduler/dist/main.js` → `scheduler`; `…/packages/worker/dist/main.js` → `worker`. */
export function serviceNameFromScript(script: string): string {
  const parts = path.resolve(script).split(path.sep);
  for (const dir of ['services', 'packages']) {
    const i = parts.lastIndexOf(dir);
    const name = i >= 0 ? parts[i + 1] : undefined;
    if (name) return name === 'cli' ? 'hodei-cli' : name;
  }
  return 'hodei';
}

// Preload for every Hodei process: `node --import <platform>/dist/telemetry/register.js main.js`.
// With OTEL_EXPORTER_OTLP_ENDPOINT set it hooks ESM loading (so http, express and pg are
// instrumented when main.js imports them) and starts the OpenTelemetry SDK exporting traces over
// OTLP/HTTP (JSON); without it, it does nothing at all.
import { register } from 'node:module';
import { loadTelemetryConfig } from './config.js';

const config = loadTelemetryConfig();

if (config.endpoint) {
  register('@opentelemetry/instrumentation/hook.mjs', import.meta.url);
  const [{ NodeSDK }, { OTLPTraceExporter }, { HttpInstrumentation }, { ExpressInstrumentation, ExpressLayerType }, { PgInstrumentation }] = await Promise.all([
    import('@opentelemetry/sdk-node'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/instrumentation-http'),
    import('@opentelemetry/instrumentation-express'),
    import('@opentelemetry/instrumentation-pg'),
  ]);
  const quiet = new Set(['/health', '/metrics']);
  const sdk = new NodeSDK({
    ...(config.serviceNameFromEnv ? {} : { serviceName: config.serviceName }),
    traceExporter: new OTLPTraceExporter(),
    // Metrics are Prometheus' (/metrics) and logs are pino's: the SDK exports traces only.
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [
      new HttpInstrumentation({ ignoreIncomingRequestHook: (req) => quiet.has((req.url ?? '').split('?')[0] ?? '') }),
      // no span for the API router: the instrumentation names it after the router's first route
      // ('router - /api/v1/workers' in every request), a route the request did not take
      new ExpressInstrumentation({ ignoreLayersType: [ExpressLayerType.ROUTER] }),
      new PgInstrumentation({ requireParentSpan: true }),
    ],
  });
  sdk.start();
  // Lets the process flush its last spans before it exits (flushTelemetry in ./trace.ts).
  (globalThis as Record<symbol, unknown>)[Symbol.for('hodei.telemetry.sdk')] = sdk;
}

// Trace context across NATS and into job processes: W3C traceparent in message headers (and in
// payloads that are stored before they are acted on), continued as child spans by consumers.
// Without the SDK (no OTEL_EXPORTER_OTLP_ENDPOINT) the OpenTelemetry API is a no-op: no headers
// are added and spans cost nothing.
import { fileURLToPath } from 'node:url';
import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
} from '@opentelemetry/api';
import type { JetStreamClient, JetStreamPublishOptions, PubAck } from '@nats-io/jetstream';
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/nats-core';

export { SpanKind, SpanStatusCode, type Span, type Context };

/** The preload to pass as `node --import <this> main.js` (the built file, from src or dist alike). */
export const TELEMETRY_REGISTER = fileURLToPath(new URL('../../dist/telemetry/register.js', import.meta.url));

const SDK_KEY = Symbol.for('hodei.telemetry.sdk');
interface Flushable {
  shutdown(): Promise<void>;
}

/** True when this process started the SDK (it was preloaded with the endpoint set). */
export function telemetryActive(): boolean {
  return Boolean((globalThis as Record<symbol, unknown>)[SDK_KEY]);
}

/** Exports what is still buffered; call before process.exit. Bounded, never throws. */
export async function flushTelemetry(timeoutMs = 3000): Promise<void> {
  const sdk = (globalThis as Record<symbol, unknown>)[SDK_KEY] as Flushable | undefined;
  if (!sdk) return;
  await Promise.race([sdk.shutdown().catch(() => undefined), new Promise((r) => setTimeout(r, timeoutMs).unref())]);
}

const tracer = () => trace.getTracer('hodei');

type Carrier = Record<string, string>;

/** The W3C traceparent of `ctx` (default: the active context), or undefined when nothing is traced. */
export function currentTraceparent(ctx: Context = context.active()): string | undefined {
  const carrier: Carrier = {};
  propagation.inject(ctx, carrier);
  return carrier.traceparent;
}

/** A context continuing `traceparent` (root context when it is missing or invalid). */
export function contextFromTraceparent(traceparent: string | null | undefined): Context {
  if (!traceparent) return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, { traceparent });
}

/** NATS headers carrying `ctx`'s trace context; `existing` is returned untouched when there is none. */
export function traceHeaders(existing?: MsgHdrs, ctx: Context = context.active()): MsgHdrs | undefined {
  const carrier: Carrier = {};
  propagation.inject(ctx, carrier);
  if (!Object.keys(carrier).length) return existing;
  const h = existing ?? natsHeaders();
  for (const [k, v] of Object.entries(carrier)) h.set(k, v);
  return h;
}

/** The trace context a message carries in its headers (root context when none). */
export function contextFromHeaders(h: MsgHdrs | undefined): Context {
  if (!h) return ROOT_CONTEXT;
  const carrier: Carrier = {};
  for (const key of h.keys()) carrier[key.toLowerCase()] = h.get(key);
  return propagation.extract(ROOT_CONTEXT, carrier);
}

/** `js.publish` with the active trace context in the message headers. */
export function publishTraced(
  js: JetStreamClient,
  subject: string,
  data: Uint8Array,
  opts: Partial<JetStreamPublishOptions> = {},
  ctx: Context = context.active(),
): Promise<PubAck> {
  const headers = traceHeaders(opts.headers, ctx);
  return js.publish(subject, data, headers ? { ...opts, headers } : opts);
}

export interface SpanOptions {
  kind?: SpanKind;
  attributes?: Attributes;
  /** Parent: a context, or a traceparent string (e.g. stored with a queued entry). Default: active. */
  parent?: Context | string | null;
}

function parentContext(parent: SpanOptions['parent']): Context {
  if (parent === undefined) return context.active();
  if (parent === null || typeof parent === 'string') return contextFromTraceparent(parent);
  return parent;
}

/** Starts a span that the caller ends (for work that outlives one call, like a job's run). */
export function startSpan(name: string, o: SpanOptions = {}): { span: Span; ctx: Context } {
  const parent = parentContext(o.parent);
  const span = tracer().startSpan(name, { kind: o.kind ?? SpanKind.INTERNAL, attributes: o.attributes }, parent);
  return { span, ctx: trace.setSpan(parent, span) };
}

/** Runs `fn` outside any trace: for work a request or a message starts and that outlives it (a
 *  timer loop), which would otherwise add its spans to that trace for as long as it runs. */
export function untraced<T>(fn: () => T): T {
  return context.with(ROOT_CONTEXT, fn);
}

/** Runs `fn` in a span (active inside it); an exception marks the span as an error and is rethrown. */
export async function withSpan<T>(name: string, fn: (span: Span) => Promise<T> | T, o: SpanOptions = {}): Promise<T> {
  const { span, ctx } = startSpan(name, o);
  try {
    return await context.with(ctx, () => fn(span));
  } catch (err) {
    span.recordException(err as Error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error)?.message });
    throw err;
  } finally {
    span.end();
  }
}

/** Handles a consumed NATS message in a consumer span, child of the trace its headers carry. */
export function withConsumedSpan<T>(name: string, msg: { subject: string; headers?: MsgHdrs }, fn: (span: Span) => Promise<T> | T): Promise<T> {
  return withSpan(name, fn, {
    kind: SpanKind.CONSUMER,
    parent: contextFromHeaders(msg.headers),
    attributes: { 'messaging.system': 'nats', 'messaging.destination.name': msg.subject },
  });
}

/** `{ traceparent }` of the active context for an event payload that is stored before it is acted on; `{}` when untraced. */
export function traceField(ctx: Context = context.active()): { traceparent?: string } {
  const traceparent = currentTraceparent(ctx);
  return traceparent ? { traceparent } : {};
}

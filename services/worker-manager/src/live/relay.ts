// Replicas of worker-manager share executions but each holds its own live streams, and only the
// replica whose status consumer took an event applies it. That replica tells the others what
// changed, so a stream opened on any of them sees the change (and a log stream its `completed`).
import type { Subscription } from '@nats-io/nats-core';
import { decodeJson, encodeJson, newId, type ServiceContext } from '@hodei/platform';
import type { EventHub, LiveEvent } from './event-hub.js';
import type { FinalInfo, LogHub } from './log-hub.js';

interface Relayed {
  origin: string;
  event: LiveEvent;
  /** A status event that ends the execution: what its log streams' `completed` says. */
  final?: FinalInfo;
}

export class LiveRelay {
  private readonly origin = newId();
  private sub: Subscription | undefined;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly logs: LogHub,
    private readonly events: EventHub,
  ) {}

  start(): void {
    this.sub = this.ctx.bus.nc.subscribe(this.ctx.bus.subjects.liveEvents, {
      callback: (err, msg) => {
        if (err) return;
        try {
          const r = decodeJson(msg.data) as Relayed;
          if (r.origin !== this.origin) this.here(r.event, r.final);
        } catch {
          this.ctx.logger.debug({ subject: msg.subject }, 'ignoring a malformed live event');
        }
      },
    });
  }

  stop(): void {
    this.sub?.unsubscribe();
  }

  /** Fans the event out to the streams of this replica and of every other one. */
  emit(event: LiveEvent, final?: FinalInfo): void {
    this.here(event, final);
    try {
      this.ctx.bus.nc.publish(this.ctx.bus.subjects.liveEvents, encodeJson({ origin: this.origin, event, final } satisfies Relayed));
    } catch (err) {
      this.ctx.logger.warn({ err }, 'could not tell the other replicas of a status change');
    }
  }

  private here(event: LiveEvent, final?: FinalInfo): void {
    if (final && event.kind === 'status') this.logs.finish(event.data.execution_id, final);
    this.events.emit(event);
  }
}

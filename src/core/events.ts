/**
 * Operational events: shard state changes, resets, timeouts, retries, slow-consumer kicks, reloads,
 * drains, config errors. Each is published on a `diagnostics_channel` (so tests and tools observe without
 * parsing logs) and handed to the gateway's log sink (a pino logger in ops/logger.ts) as one JSON line.
 * Never called per request on the hot path. A repeat of the same event (same topic and `key`) within
 * `everyMs` is counted, not logged: the count goes out with the next line that is (the channel still
 * sees every one).
 */
import { channel, type Channel } from 'node:diagnostics_channel';

export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

/** The channels, one per topic (`kvgate:shard`, ...). */
export const TOPICS = ['shard', 'client', 'reload', 'drain', 'config', 'worker', 'gateway'] as const;
export type Topic = (typeof TOPICS)[number];

export const channelName = (t: Topic): string => `kvgate:${t}`;

/**
 * One Channel per topic for the life of the process, held here rather than by each gateway: Node 20 keeps
 * channels in a map of weak references whose finalizer deletes the map entry by name, so when a gateway's
 * Channel was collected after another was made for the same name, the stale finalizer removed the live one
 * and `subscribe(name)` got a third Channel that nobody published on (seen under c8 in CI).
 */
const CHANNELS = Object.fromEntries(TOPICS.map((t) => [t, channel(channelName(t))])) as Record<Topic, Channel>;

/** What a subscriber of a channel receives. */
export interface OpsEvent {
  topic: Topic;
  /** A short stable name (`shard.down`, `reload.failed`). */
  event: string;
  level: Level;
  msg: string;
  /** Which gateway of the process (tests run several). */
  gateway: string;
  [field: string]: unknown;
}

export type LogSink = (level: Level, fields: Record<string, unknown>, msg: string) => void;

export class Events {
  private readonly repeats = new Map<string, { last: number; suppressed: number }>();

  constructor(
    readonly gateway: string,
    private readonly sink: LogSink | null,
    private readonly everyMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * `key` names what a repeat is a repeat of (a shard's label, a client address); without one, the event
   * name alone. Pass `key: null` for events that must never be suppressed (reloads, drains).
   */
  emit(
    topic: Topic,
    event: string,
    level: Level,
    msg: string,
    fields: Record<string, unknown> = {},
    key?: string | null,
  ): void {
    const ch = CHANNELS[topic];
    if (ch.hasSubscribers)
      ch.publish({ ...fields, topic, event, level, msg, gateway: this.gateway } satisfies OpsEvent);
    if (this.sink === null) return;
    let suppressed = 0;
    if (key !== null) {
      const id = `${event} ${key ?? ''}`;
      const t = this.now();
      const r = this.repeats.get(id);
      if (r !== undefined && t - r.last < this.everyMs) {
        r.suppressed++;
        return;
      }
      suppressed = r?.suppressed ?? 0;
      this.repeats.set(id, { last: t, suppressed: 0 });
      if (this.repeats.size > 10_000) this.repeats.clear(); // keyed by clients: bounded
    }
    this.sink(level, suppressed > 0 ? { ...fields, event, repeated: suppressed } : { ...fields, event }, msg);
  }
}

/** Events that go nowhere but their channels (unit tests, tools that build one piece). */
export const quietEvents = (gateway = 'none'): Events => new Events(gateway, null);

/**
 * `limits.maxConnections`: WebSocket connections and HTTP requests in progress, counted together, and
 * never more than the process's open-file limit leaves after what it has open at start (the shard
 * reserve of src/flow/fd-reserve.ts among it). Past the limit new clients are refused at once
 * (HTTP 503 BUSY, upgrade refused with 503) and counted.
 *
 * uWS (v20.30) tells us nothing about an HTTP connection between its requests, so an idle keep-alive
 * connection is not counted; uWS closes those after 10 s without a request.
 */
import { readdirSync, readFileSync } from 'node:fs';

export class ConnectionGate {
  ws = 0;
  http = 0;
  refused = 0;
  max: number;
  /** Why `max` is lower than configured, if it is. */
  clampedBy: string | null;
  /** What the open-file limit leaves for clients, reckoned at start. */
  private readonly usable: number;
  private readonly fdLimit: number;

  /** `inUse`: descriptors the process has open already (the shard reserve among them). */
  constructor(configured: number, shardCount: number, inUse = openDescriptors()) {
    this.fdLimit = openFileLimit();
    // Every client and shard socket is a descriptor; keep what is open now (the reserve among it), two
    // per shard (a connection and its replacement while reconnecting) and a margin out of the clients'
    // reach.
    this.usable = this.fdLimit === Infinity ? Infinity : this.fdLimit - inUse - 2 * shardCount - 16;
    this.max = configured;
    this.clampedBy = null;
    this.resize(configured);
  }

  /**
   * `limits.maxConnections` (at start and on a reload): clients already in are never cut off; past the
   * new bound new ones are refused until enough leave.
   */
  resize(configured: number): void {
    if (this.usable < configured) {
      this.max = Math.max(1, this.usable);
      this.clampedBy = `the open-file limit is ${this.fdLimit} (ulimit -n); limits.maxConnections lowered from ${configured} to ${this.max}`;
    } else {
      this.max = configured;
      this.clampedBy = null;
    }
  }

  get total(): number {
    return this.ws + this.http;
  }

  /** True (and counted) when a new client must be refused. */
  refuse(): boolean {
    if (this.ws + this.http < this.max) return false;
    this.refused++;
    return true;
  }
}

/** Descriptors open in this process now (0 where /proc cannot tell). */
export function openDescriptors(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return 0;
  }
}

/** The soft RLIMIT_NOFILE, from /proc (Node has no getrlimit); Infinity where it cannot be read. */
export function openFileLimit(): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (m === null || m[1] === 'unlimited') return Infinity;
    return Number(m[1]);
  } catch {
    return Infinity;
  }
}

/**
 * With `workers` N, the process-wide limits an operator sets are for the whole gateway, not for each
 * worker: memory held for clients (`limits.maxBufferedBytesTotal`) and client connections
 * (`limits.maxConnections`) are split evenly, so N workers together hold what one would. A worker's share
 * never drops below what one client may hold, so any client can still be served.
 */
import type { Config } from '../config/schema';

export const ENV_WORKERS = 'KVGATE_WORKERS';

export function workerShare(config: Config, workers: number): Config {
  if (workers <= 1) return config;
  const l = config.limits;
  return {
    ...config,
    limits: {
      ...l,
      maxBufferedBytesTotal: Math.max(l.maxBufferedBytesPerConnection, Math.floor(l.maxBufferedBytesTotal / workers)),
      maxConnections: Math.max(1, Math.floor(l.maxConnections / workers)),
    },
  };
}

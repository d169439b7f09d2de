/**
 * The gateway's structured log: pino, JSON lines on stdout, one level (`log.level`, `--log-level`).
 * Only operational events go here (core/events.ts); nothing per request.
 */
import pino, { type Logger } from 'pino';
import type { LogSink } from '../core/events';
import type { LogLevel } from '../config/schema';

export function createLogger(level: LogLevel, fields: Record<string, unknown> = {}): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid, ...fields },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Synchronous writes: a line logged just before process.exit (a failed start, a drain) is not lost.
      transport: undefined,
    },
    pino.destination({ fd: 1, sync: true }),
  );
}

/** A sink for Events that writes through a pino logger. */
export function loggerSink(log: Logger): LogSink {
  return (level, fields, msg) => log[level](fields, msg);
}

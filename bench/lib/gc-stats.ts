/**
 * Counts garbage collections with perf_hooks, the same way the gateway's /debug/stats does: young
 * (scavenge) and major collections and their total pause.
 */
import { PerformanceObserver, constants } from 'node:perf_hooks';

export interface GcCounts {
  young: number;
  major: number;
  incremental: number;
  weak: number;
  pauseMs: number;
}

export function watchGc(): GcCounts {
  const gc: GcCounts = { young: 0, major: 0, incremental: 0, weak: 0, pauseMs: 0 };
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MINOR) gc.young++;
      else if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) gc.major++;
      else if (kind === constants.NODE_PERFORMANCE_GC_INCREMENTAL) gc.incremental++;
      else gc.weak++;
      gc.pauseMs += e.duration;
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  return gc;
}

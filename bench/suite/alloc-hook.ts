/**
 * Preloaded into kvgate (`node -r dist/bench/suite/alloc-hook.js dist/src/main.js ...`) to find what it
 * allocates: V8's sampling heap profiler, keeping samples of objects the young-generation GC already
 * collected (which `--heap-prof` drops), written as JSON to $KVGATE_ALLOC_PROFILE when the process exits.
 */
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';

const out = process.env.KVGATE_ALLOC_PROFILE;
if (out) {
  const session = new Session();
  session.connect();
  session.post('HeapProfiler.enable');
  session.post('HeapProfiler.startSampling', {
    samplingInterval: 1024,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  } as never);
  process.once('exit', () => {
    session.post('HeapProfiler.stopSampling', (err, res) => {
      if (!err) writeFileSync(out, JSON.stringify((res as { profile: unknown }).profile));
    });
  });
}

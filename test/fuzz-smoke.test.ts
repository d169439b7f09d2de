/**
 * A bounded fuzz run inside the suite (docs/FUZZING.md): a gateway process in front of a real local
 * fleet, about 20 s of WebSocket and HTTP inputs (a few tens of thousands) with the canary, the process
 * and its log watched. It must find no anomaly. The seed is fixed so a failure replays; FUZZ_SEED and
 * FUZZ_SECONDS change it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { DEFAULTS, runFuzz } from './fuzz/fuzz';

const seed = Number(process.env.FUZZ_SEED ?? 7001);
const seconds = Number(process.env.FUZZ_SECONDS ?? 20);

test(
  `fuzz smoke: ${seconds} s of hostile WebSocket and HTTP input, seed ${seed}: no anomaly`,
  { timeout: (seconds + 40) * 1000 },
  async () => {
    const report = await runFuzz({ ...DEFAULTS, seed, seconds });
    const path = report.save(join(tmpdir(), `kvgate-fuzz-smoke-${seed}`));
    // the run must have been a real one: inputs of both fronts and canary round trips on both
    assert.ok(report.total > 2000, `only ${report.total} inputs in ${seconds} s`);
    assert.ok(
      [...report.inputs.keys()].some((k) => k.startsWith('ws ')) &&
        [...report.inputs.keys()].some((k) => k.startsWith('http ')),
    );
    assert.ok(report.canary.ws > 0 && report.canary.http > 0, 'the canary made no round trip');
    const kinds = [...report.anomalies.values()].map((g) => `${g.count}x ${g.kind}`);
    assert.deepEqual(
      kinds,
      [],
      `${report.text()}\nsummary: ${path}\nreplay: node dist/test/fuzz/run.js --seed ${seed} --replay STREAM:N`,
    );
  },
);

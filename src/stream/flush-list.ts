/**
 * Writers that have output pending are collected here and shipped once, in a microtask at the end of the
 * current callback (a shard's socket read, a client's message). So all the results one socket read
 * produced for one client leave in one frame, and no code path can forget to flush.
 */
export interface Flushable {
  queuedForFlush: boolean;
  flush(): void;
}

// A list that only grows and is reused through `count`: no array churn per callback.
const list: (Flushable | null)[] = [];
let count = 0;
let scheduled = false;

function runFlush(): void {
  scheduled = false;
  if (count === 0) return;
  // Entries may be appended while flushing (a flush can fail a request, which writes): keep reading.
  for (let k = 0; k < count; k++) {
    const w = list[k]!;
    list[k] = null;
    w.queuedForFlush = false;
    try {
      w.flush();
    } catch (e) {
      // One broken client must not stop the others' output.
      process.emitWarning(`kvgate: flush failed: ${(e as Error).message}`);
    }
  }
  count = 0;
}

// Inside a scope (a shard's socket read, a client's message) the scope's end flushes; only output made
// elsewhere (timers, rare paths) pays for a microtask, which in Node allocates per call.
let depth = 0;

export function markForFlush(w: Flushable): void {
  if (w.queuedForFlush) return;
  w.queuedForFlush = true;
  if (count < list.length) list[count] = w;
  else list.push(w);
  count++;
  if (depth === 0 && !scheduled) {
    scheduled = true;
    queueMicrotask(runFlush);
  }
}

export function enterFlushScope(): void {
  depth++;
}

export function leaveFlushScope(): void {
  if (--depth === 0 && count > 0) runFlush();
}

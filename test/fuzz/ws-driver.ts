/**
 * Drives WebSocket fuzz connections: each sends bursts of inputs, then a fence (a request the gateway
 * answers synchronously, so its END follows every synchronous answer to the burst), and checks every
 * server message against the protocol and every tracked request against its oracle.
 */
import { ErrorTable } from '../../src/core/errors';
import type { FuzzCtx } from './context';
import { KINDS, turn } from './context';
import { genWsInput, Tracked, WsInput } from './gen-ws';
import { encode, map } from './mp';
import { Rng } from './prng';
import { Entry, Op, RawWs, wsFrame } from './ws-raw';

const SUCCESS: Record<string, number[]> = {
  get: [0, 1, 2],
  mget: [0, 1, 2],
  set: [3],
  mset: [3],
  del: [2, 3],
  mdel: [2, 3],
};

interface Live {
  t: Tracked;
  n: number;
  input: WsInput;
  /** Per item: finished results (a complete VALUE_PART run counts once) and part progress. */
  results: Map<number, number[]>;
  parts: Map<number, number>;
  errors: Map<number, string[]>;
  ended: boolean;
  waiter: (() => void) | null;
}

const FENCE_BASE = 0xf0000000;

export async function wsWorker(ctx: FuzzCtx, worker: number): Promise<void> {
  for (let conn = 0; !ctx.over() && !ctx.dead(); conn++) {
    await oneConnection(ctx, Rng.for(ctx.seed, `ws-conn-${worker}`, conn));
  }
}

async function oneConnection(ctx: FuzzCtx, crng: Rng): Promise<void> {
  const r = ctx.report;
  const tracked = new Map<number, Live>();
  let fenceId = FENCE_BASE;
  let fenceWait: { id: number; resolve: () => void } | null = null;
  let pongs: Buffer[] = [];
  let windowErrors = 0;
  let closeInfo: { code: number | null; byFrame: boolean } | null = null;
  let closeWaiter: (() => void) | null = null;
  const history: number[] = [];
  let current: { n: number; input: WsInput } | null = null;
  let nextTracked = 0x10000 + crng.int(0, 0x1000000);

  const bad = (kind: string, what: string, input?: WsInput, n?: number): void => {
    if (ctx.dead()) return;
    const at = input ?? current?.input;
    r.anomaly(kind, {
      stream: 'ws',
      n: n ?? current?.n ?? -1,
      inputKind: at?.kind ?? '?',
      what,
      input: at?.payload,
      context: history.slice(-16),
    });
  };

  const onEntry = (e: Entry): void => {
    if (
      !Array.isArray(e) ||
      e.length < 3 ||
      typeof e[0] !== 'number' ||
      typeof e[1] !== 'number' ||
      typeof e[2] !== 'number'
    ) {
      return bad('ws: malformed entry', `entry ${JSON.stringify(e).slice(0, 200)}`);
    }
    const [id, i, kind] = e as [number, number, number];
    if (kind < 0 || kind > 5 || !Number.isInteger(i) || i < -1)
      return bad('ws: malformed entry', `entry ${JSON.stringify(e).slice(0, 200)}`);
    const shape = [5, 7, 3, 3, 5, 3][kind];
    if (e.length !== shape)
      return bad(`ws: ${KINDS[kind]} entry with ${e.length} fields`, `entry ${JSON.stringify(e).slice(0, 200)}`);
    let code = '';
    if (kind === 4) {
      code = String(e[3]);
      if (typeof e[3] !== 'string' || typeof e[4] !== 'string')
        bad('ws: ERROR entry without string code/message', JSON.stringify(e).slice(0, 200));
      else if (!(code in ErrorTable)) bad(`ws: error code not in the table: ${code}`, JSON.stringify(e).slice(0, 200));
      else if (code === 'INTERNAL') bad('ws: INTERNAL error entry', `entry ${JSON.stringify(e).slice(0, 300)}`);
      r.answer(`ws ERROR ${code}`);
    } else r.answer(`ws ${KINDS[kind]}`);
    if (kind === 0 && !(e[4] instanceof Uint8Array)) bad('ws: VALUE without bin', JSON.stringify(e).slice(0, 200));
    if (fenceWait !== null && id === fenceWait.id) {
      if (kind === 5) {
        const f = fenceWait;
        fenceWait = null;
        f.resolve();
      }
      return;
    }
    if (kind === 4 && id === 0 && i === -1 && code === 'BAD_REQUEST') windowErrors++;
    const l = tracked.get(id);
    if (l === undefined) return;
    if (l.ended)
      return bad(
        'ws: entry after END',
        `entry ${JSON.stringify(e).slice(0, 200)} for a request already ended`,
        l.input,
        l.n,
      );
    if (kind === 5) {
      l.ended = true;
      check(l);
      tracked.delete(id);
      l.waiter?.();
      return;
    }
    if (kind === 4) {
      const xs = l.errors.get(i) ?? [];
      xs.push(code);
      l.errors.set(i, xs);
    }
    if (kind === 1) {
      const total = e[4] as number,
        offset = e[5] as number,
        chunk = e[6] as Uint8Array;
      const at = l.parts.get(i) ?? 0;
      if (offset !== at || !(chunk instanceof Uint8Array))
        return bad('ws: VALUE_PART out of order', `item ${i}: offset ${offset}, expected ${at}`, l.input, l.n);
      if (offset + chunk.length < total) {
        l.parts.set(i, offset + chunk.length);
        return;
      }
      l.parts.delete(i);
    }
    if (kind === 4) l.parts.delete(i);
    const xs = l.results.get(i) ?? [];
    xs.push(kind);
    l.results.set(i, xs);
  };

  const check = (l: Live): void => {
    const t = l.t;
    const ok = SUCCESS[t.op];
    const single = t.op === 'get' || t.op === 'set' || t.op === 'del';
    const reqErrors = l.errors.get(-1) ?? [];
    const describe = (): string =>
      `request id ${t.id} op ${t.op}: results ${JSON.stringify([...l.results])}, errors ${JSON.stringify([...l.errors])}`;
    let successes = 0;
    for (const [i, xs] of l.results) if (i >= 0) successes += xs.filter((k) => k !== 4).length;
    if (t.reqErr) {
      if (successes > 0) bad(`ws: invalid ${t.op} request was applied`, describe(), l.input, l.n);
      else if (reqErrors.length === 0 && !(single && l.errors.has(0)))
        bad(`ws: invalid ${t.op} request got no request error`, describe(), l.input, l.n);
      return;
    }
    if (single) {
      const xs = l.results.get(0) ?? [];
      if (t.items[0] === 'ok') {
        if (reqErrors.length) bad(`ws: valid ${t.op} refused with ${reqErrors[0]}`, describe(), l.input, l.n);
        else if (xs.length !== 1 || !ok.includes(xs[0]))
          bad(
            `ws: valid ${t.op} got ${xs.map((k) => KINDS[k]).join('+') || 'nothing'}${l.errors.get(0) ? ` ${l.errors.get(0)}` : ''}`,
            describe(),
            l.input,
            l.n,
          );
      } else if (successes > 0) bad(`ws: invalid ${t.op} item was applied`, describe(), l.input, l.n);
      else if (reqErrors.length === 0 && xs.length !== 1)
        bad(`ws: invalid ${t.op} item got ${xs.length} results`, describe(), l.input, l.n);
      return;
    }
    if (reqErrors.length)
      return bad(`ws: valid ${t.op} request refused with ${reqErrors[0]}`, describe(), l.input, l.n);
    for (const i of l.results.keys())
      if (i >= t.items.length)
        return bad(`ws: ${t.op} result for an item that does not exist`, describe(), l.input, l.n);
    for (let i = 0; i < t.items.length; i++) {
      const xs = l.results.get(i) ?? [];
      if (xs.length !== 1)
        return bad(`ws: ${t.op} item got ${xs.length} results`, `item ${i}: ${describe().slice(0, 400)}`, l.input, l.n);
      if (t.items[i] === 'ok' && !ok.includes(xs[0]))
        return bad(`ws: valid ${t.op} item refused with ${(l.errors.get(i) ?? ['?'])[0]}`, `item ${i}`, l.input, l.n);
      if (t.items[i] === 'err' && xs[0] !== 4)
        return bad(`ws: invalid ${t.op} item was applied`, `item ${i}: ${KINDS[xs[0]]}`, l.input, l.n);
    }
  };

  let ws: RawWs;
  try {
    ws = await RawWs.connect(
      ctx.host,
      ctx.port,
      {
        onMessage: (entries, raw, error) => {
          if (entries === null) {
            bad(
              'ws: server message is not valid msgpack',
              `${error}: ${raw.subarray(0, 64).toString('hex')} (${raw.length} bytes)`,
            );
            return;
          }
          for (const e of entries) onEntry(e);
        },
        onText: (t) => bad('ws: text frame from the server', t.slice(0, 200)),
        onPong: (p) => {
          pongs.push(p);
        },
        onClose: (code, _reason, byFrame) => {
          closeInfo = { code, byFrame };
          closeWaiter?.();
        },
      },
      ctx.answerMs,
    );
  } catch (e) {
    if (!ctx.over()) bad('ws: upgrade failed', (e as Error).message);
    return;
  }

  const waitUntil = (cond: () => boolean, ms: number, arm: (wake: () => void) => void): Promise<boolean> =>
    new Promise((resolve) => {
      if (cond()) return resolve(true);
      const timer = setTimeout(() => resolve(cond()), ms);
      arm(() => {
        if (cond()) {
          clearTimeout(timer);
          resolve(true);
        }
      });
    });

  const fence = async (extraMs: number): Promise<boolean> => {
    const id = fenceId++;
    let done = false;
    fenceWait = {
      id,
      resolve: () => {
        done = true;
        closeWaiter?.();
      },
    };
    ws.write(wsFrame(Op.Bin, encode(map({ id, op: 'get' }))));
    const arrived = await waitUntil(
      () => done || closeInfo !== null,
      ctx.answerMs + extraMs,
      (w) => {
        closeWaiter = w;
      },
    );
    closeWaiter = null;
    if (!done && closeInfo === null && arrived === false) {
      bad(
        `ws: no answer within ${ctx.answerMs + extraMs} ms`,
        `fence id ${id} after inputs ${history.slice(-8).join(', ')}`,
      );
      return false;
    }
    return done;
  };

  const budget = crng.weighted<number>([
    [50, crng.int(1, 20)],
    [40, crng.int(21, 200)],
    [10, crng.int(201, 1000)],
  ]);
  let sent = 0;
  let burstBytes = 0;
  let burst: { n: number; input: WsInput }[] = [];
  try {
    while (sent < budget && !ctx.over() && !ctx.dead()) {
      const n = ctx.next('ws');
      if (n === null) break;
      const input = genWsInput(Rng.for(ctx.seed, 'ws', n), ctx.lim, () => nextTracked++);
      r.input(`ws ${input.kind}`);
      history.push(n);
      current = { n, input };
      burst.push(current);
      sent++;
      for (const t of input.tracked) {
        tracked.set(t.id, {
          t,
          n,
          input,
          results: new Map(),
          parts: new Map(),
          errors: new Map(),
          ended: false,
          waiter: null,
        });
      }
      // text frames and pings are judged by what comes back between two fences: send them alone
      const alone = input.kind === 'text' || input.ping !== undefined;
      if (alone && burst.length > 1 && !(await settle(burst.slice(0, -1)))) return;
      windowErrors = 0;
      pongs = [];
      const bytes = Buffer.concat(input.frames);
      burstBytes += bytes.length;
      if (crng.chance(0.25) && bytes.length > 1) {
        // split across TCP writes at random points
        let at = 0;
        while (at < bytes.length) {
          const k = Math.max(1, Math.min(bytes.length - at, crng.int(1, Math.max(1, bytes.length >> 1))));
          ws.write(bytes.subarray(at, at + k));
          at += k;
          await turn();
        }
      } else ws.write(bytes);
      if (input.ends !== undefined) {
        await ending(input, n);
        return;
      }
      const fenceNow = alone || burst.length >= crng.int(1, 8) || burstBytes > 256 * 1024;
      if (!fenceNow) continue;
      if (!(await settle(burst))) return;
      if (input.kind === 'text' && windowErrors !== input.textFrames) {
        bad(
          'ws: text frames not answered with one BAD_REQUEST each',
          `${input.textFrames} text frames, ${windowErrors} error entries`,
        );
      }
      if (input.ping !== undefined && !pongs.some((p) => p.equals(input.ping!)))
        bad('ws: ping not answered with its pong', `${pongs.length} pongs`);
    }
    // the last burst is judged like the others before the connection is closed
    if (closeInfo === null && burst.length > 0 && !ctx.dead() && !(await settle(burst))) return;
    if (closeInfo === null) {
      ws.write(wsFrame(Op.Close, Buffer.from([0x03, 0xe8])));
      await waitUntil(
        () => closeInfo !== null,
        ctx.answerMs,
        (w) => {
          closeWaiter = w;
        },
      );
    }
  } finally {
    ws.destroy();
  }

  /** Fences the burst and waits for every tracked request in it to end; false once the connection is gone. */
  async function settle(of: { n: number; input: WsInput }[]): Promise<boolean> {
    const extra = Math.min(20_000, burstBytes / 50); // a large burst takes time to cross a busy machine
    if (!(await fence(extra))) {
      if (closeInfo !== null) unexpectedClose(of);
      return false;
    }
    for (const l of [...tracked.values()]) {
      const ended = await waitUntil(
        () => l.ended || closeInfo !== null,
        ctx.answerMs + extra,
        (w) => {
          l.waiter = w;
        },
      );
      if (!ended) {
        bad(
          'ws: request not ended',
          `request id ${l.t.id} (${l.t.op}, ${l.t.items.length} items) had no END within ${ctx.answerMs + extra} ms`,
          l.input,
          l.n,
        );
        tracked.delete(l.t.id);
      }
    }
    if (closeInfo !== null) {
      unexpectedClose(of);
      return false;
    }
    burst = burst.filter((b) => !of.includes(b));
    burstBytes = 0;
    return true;
  }

  function unexpectedClose(of: { n: number; input: WsInput }[] = burst): void {
    const c = closeInfo!;
    bad(
      `ws: connection closed by the gateway (${c.byFrame ? `close code ${c.code}` : 'no close frame'})`,
      `after inputs ${of.map((b) => `${b.n}:${b.input.kind}`).join(', ')}`,
      of[of.length - 1]?.input,
      of[of.length - 1]?.n,
    );
  }

  async function ending(input: WsInput, n: number): Promise<void> {
    // frames uWS lets through (LIMITS 'ws-frame-rules') would hold the worker for the whole bound
    const ms = input.ends === 'protocol' || input.ends === 'bad-utf8' ? Math.min(ctx.answerMs, 1500) : ctx.answerMs;
    const closed = await waitUntil(
      () => closeInfo !== null,
      ms,
      (w) => {
        closeWaiter = w;
      },
    );
    const c = closeInfo as { code: number | null; byFrame: boolean } | null;
    const code = c === null ? 'open' : c.byFrame ? String(c.code) : 'tcp-close';
    r.answer(`ws close after ${input.ends}: ${code}`);
    if (!closed) {
      if (input.ends === 'bad-utf8')
        bad('ws: invalid UTF-8 text frame neither answered nor closed', 'still open', input, n);
      else if (/^protocol (unmasked|data-inside-fragments)$/.test(input.kind)) {
        r.limit('ws-frame-rules', {
          stream: 'ws',
          n,
          inputKind: input.kind,
          what: `still open after ${ms} ms`,
          input: Buffer.concat(input.frames),
        });
      } else if (input.kind === 'oversize-claimed' && announced(input.frames[0]) <= uwsBound(ctx.lim.maxPayloadBytes)) {
        r.limit('ws-oversize-partial', {
          stream: 'ws',
          n,
          inputKind: input.kind,
          what: `still open after ${ms} ms`,
          input: input.frames[0].subarray(0, 16),
        });
      } else bad(`ws: connection not closed after ${input.kind}`, `still open after ${ms} ms`, input, n);
      return;
    }
    if (
      input.ends === 'oversize' &&
      code === 'tcp-close' &&
      announced(input.frames[0]) > uwsBound(ctx.lim.maxPayloadBytes)
    )
      r.limit('ws-oversize-header', {
        stream: 'ws',
        n,
        inputKind: input.kind,
        what: 'closed without a close frame',
        input: input.frames[0].subarray(0, 16),
      });
    else if (input.ends === 'oversize' && code !== '1009')
      bad(
        `ws: oversized frame closed with ${code}, not 1009`,
        `frame over ws.maxPayloadBytes (${ctx.lim.maxPayloadBytes})`,
        input,
        n,
      );
    if (input.ends === 'bad-utf8' && code !== '1007') {
      if (code === 'tcp-close')
        r.limit('bad-utf8-text', {
          stream: 'ws',
          n,
          inputKind: input.kind,
          what: 'closed without a close frame',
          input: input.payload,
        });
      else bad(`ws: invalid UTF-8 text frame closed with ${code}, not 1007`, '', input, n);
    }
    if (input.ends === 'client-close' && !c!.byFrame)
      bad('ws: client close not answered with a close frame', code, input, n);
  }
}

/** The payload length a frame's header announces. */
function announced(frame: Buffer): number {
  const n = frame[1] & 0x7f;
  if (n === 126) return frame.readUInt16BE(2);
  if (n === 127) return Number(frame.readBigUInt64BE(2));
  return n;
}

/** The most uWS reads of one frame (src/front/ws.ts uwsPayloadBound; docs/PROTOCOL.md close codes). */
function uwsBound(maxPayloadBytes: number): number {
  return maxPayloadBytes + Math.min(maxPayloadBytes, 4 * 1024 * 1024);
}
